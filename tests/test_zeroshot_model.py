"""Scoring with the real slmjax model: batch independence through its attention kernels, agreement
with an unbatched forward in float64, and slmjax-eval on a checkpoint in the paper's release format."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile

import slmjax.model
from slmjax.analysis.zeroshot.scoring import Scorer, benchmark_sequence, file_scores
from zeroshot_fixtures import make_lexical, make_storycloze, make_syntactic

K = 16
CFG = slmjax.model.ModelConfig(vocab_size=K + 2, dim=64, n_layers=2, n_heads=1, max_seq_len=64,
                               attention_block=32)
EOS, PAD = K, K + 1


@pytest.fixture(scope="module")
def params():
    return slmjax.model.init_params(CFG, jax.random.key(0))


def _logits_fn(p, tokens, positions, segment_ids):
    return slmjax.model.forward(CFG, p, tokens, positions=positions, segment_ids=segment_ids)


def _reference(params, seq):
    """Unbatched forward of one sequence, log-softmax and sum in float64 NumPy."""
    logits = np.asarray(slmjax.model.forward(CFG, params, seq[None, :-1]), np.float64)[0]
    m = logits.max(-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    lp = logp[np.arange(len(seq) - 1), seq[1:]]
    return lp[:-1].sum(), lp[-1]


@pytest.mark.parametrize("mode", ["bucket", "pack"])
def test_real_model_batch_independence(params, mode):
    rng = np.random.default_rng(0)
    seqs = [benchmark_sequence(rng.integers(0, K, rng.integers(17, 40)), EOS) for _ in range(24)]
    ref = [_reference(params, s) for s in seqs[:4]]
    for tpb in (256, 4096):
        order = np.random.default_rng(tpb).permutation(len(seqs))
        stats = Scorer(_logits_fn, params, max_len=CFG.max_seq_len, pad_id=PAD, mode=mode,
                       tokens_per_batch=tpb, progress=False).score([seqs[i] for i in order])
        for j in range(4):
            where = int(np.flatnonzero(order == j)[0])
            assert stats.body_logprob[where] == pytest.approx(ref[j][0], rel=2e-5, abs=1e-4)
            assert stats.last_logprob[where] == pytest.approx(ref[j][1], rel=2e-5, abs=1e-4)


def test_scoring_program_has_no_cross_device_collectives(params):
    """The scorer keeps up to three batches in flight. That is safe on several CPU devices only
    while its program has no collective: XLA's CPU collectives deadlock when independent programs
    with one are queued back to back (the training evaluator waits for each step instead)."""
    from slmjax.analysis.zeroshot.scoring import model_logits_fn

    scorer = Scorer(model_logits_fn(CFG), params, max_len=CFG.max_seq_len, pad_id=PAD,
                    progress=False)
    assert scorer.n_dev == 8
    rng = np.random.default_rng(0)
    seqs = [benchmark_sequence(rng.integers(0, K, rng.integers(17, 40)), EOS) for _ in range(24)]
    b = scorer.plan(np.array([len(s) - 1 for s in seqs]), seqs)[0]
    with jax.set_mesh(scorer.mesh):
        hlo = scorer._fn.lower(scorer.params, *(scorer._put(x) for x in (
            b.tokens, b.targets, b.positions, b.segment_ids))).compile().as_text()
    found = [op for op in ("all-reduce", "all-gather", "all-to-all", "reduce-scatter",
                           "collective-permute") if op in hlo]
    assert not found, found


def _fit_tokenizer(tokdir):
    from slmjax.units.features import MfccFeatures
    from slmjax.units.mfcc import MfccConfig
    from slmjax.units.tokenizer import save_tokenizer
    cents = np.random.default_rng(1).normal(size=(K, 39)).astype(np.float32) * 20
    return save_tokenizer(str(tokdir), MfccFeatures(MfccConfig()), cents, {"test": True})


def _tone(path, freq, seconds=0.25):
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * np.linspace(0.2, 1, len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), wave.astype(np.float32), 16000)


def _release_eval(tmp_path, params):
    """A release checkpoint of ``params``, an MFCC tokenizer and four tiny sets: (command, env,
    tokenizer, wavs)."""
    tok = _fit_tokenizer(tmp_path / "tok")
    ckpt = tmp_path / "release"
    slmjax.model.save_release_checkpoint(str(ckpt), CFG, params)
    root = tmp_path / "bench"
    make_lexical(root / "lexical" / "dev", [("1", 3, "v1"), ("2", 0, "v1")])
    make_syntactic(root / "syntactic" / "dev", [("binding", "a", "1", "v1")])
    make_storycloze(root / "sSC", 2)
    make_storycloze(root / "tSC", 2)
    wavs = sorted(root.rglob("*.wav"))
    for i, w in enumerate(wavs):
        _tone(w, 200 + 97 * i)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "slmjax.analysis.zeroshot.cli", "--dtype=float32",
           f"--benchmarks={root}",
           f"--release_checkpoint={ckpt}", f"--tokenizer={tmp_path / 'tok'}",
           f"--out={tmp_path / 'out'}", f"--units_cache={tmp_path / 'cache'}"]
    return cmd, env, tok, wavs


def test_cli_release_checkpoint(tmp_path, params):
    cmd, env, tok, wavs = _release_eval(tmp_path, params)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = tmp_path / "out" / "zeroshot" / "release"
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores["tasks"]) == {"swuggy_dev", "sblimp_dev", "ssc", "tsc"}
    assert scores["compute_dtype"] == "float32" and scores["source"] == "release checkpoint"
    assert set(scores["headline"]) >= {"sblimp", "sblimp_item", "swuggy", "ssc", "tsc"}
    # every submission line equals the paper's convention computed from an unbatched forward
    for line in (out / "mean" / "sSC.txt").read_text().splitlines():
        stem, value = line.split()
        units = tok.encode_file(str(next(w for w in wavs if w.stem == stem)))
        body, _ = _reference(params, benchmark_sequence(units, EOS))
        assert float(value) == pytest.approx(body / len(units), rel=1e-4)
    # a tokenizer of another vocabulary is refused in one line
    bad = subprocess.run(cmd[:-3] + [f"--tokenizer={tmp_path / 'nope'}", f"--out={tmp_path}"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "slmjax-eval: error: cannot load tokenizer" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_release_scored_task_by_task_keeps_every_task(tmp_path, params):
    """--tasks=ssc, then --tasks=tsc: one scores.json with both (the second call rewrote it with
    tsc alone while sSC's submission files stayed); a third call has nothing left to score."""
    cmd, env, _, _ = _release_eval(tmp_path, params)
    out = tmp_path / "out" / "zeroshot" / "release"
    runs = [subprocess.run(cmd + [f"--tasks={task}"], capture_output=True, text=True, env=env,
                           timeout=300) for task in ("ssc", "tsc")]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-2000:]
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores["tasks"]) == {"ssc", "tsc"} and set(scores["headline"]) == {"ssc", "tsc"}
    assert "tsc" in runs[1].stderr and "scoring ['tsc'] into" in runs[1].stderr
    again = subprocess.run(cmd + ["--tasks=ssc,tsc"], capture_output=True, text=True, env=env,
                           timeout=300)
    assert again.returncode == 0 and "already scored" in again.stderr, again.stderr[-2000:]
    assert json.loads((out / "scores.json").read_text())["tasks"] == scores["tasks"]


def test_mean_convention_is_the_papers(params):
    """mean = mean log p(units | [EOS] + units[:-1]); the terminal EOS only enters mean_eos."""
    units = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    seq = benchmark_sequence(units, EOS)
    stats = Scorer(_logits_fn, params, max_len=CFG.max_seq_len, pad_id=PAD,
                   progress=False).score([seq])
    body, eos = _reference(params, seq)
    assert file_scores(stats, "mean")[0] == pytest.approx(body / 8, rel=1e-5)
    assert file_scores(stats, "mean_eos")[0] == pytest.approx((body + eos) / 9, rel=1e-5)
