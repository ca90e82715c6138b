"""slmjax-eval on a real run: a tiny model trained for a few steps on a unit dataset whose tokenizer
is an MFCC tokenizer; every checkpoint scored, already-scored ones skipped, --steps, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from zeroshot_fixtures import make_lexical, make_storycloze, make_syntactic


def _tone(path, freq, seconds=0.3):
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * freq * t * (1 + 0.5 * t))
    soundfile.write(str(path), wave.astype(np.float32), 16000)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from configs.train import get_config
    from slmjax.data.testing import random_utterances, write_unit_dataset
    from slmjax.train.loop import train
    from slmjax.units.features import MfccFeatures
    from slmjax.units.mfcc import MfccConfig
    from slmjax.units.tokenizer import save_tokenizer
    root = tmp_path_factory.mktemp("run")
    cents = np.random.default_rng(1).normal(size=(16, 39)).astype(np.float32) * 20
    tok = save_tokenizer(str(root / "tok"), MfccFeatures(MfccConfig()), cents, {})
    rng = np.random.default_rng(0)
    write_unit_dataset(str(root / "ds"), {"train": random_utterances(100, 18, rng),
                                          "test": random_utterances(10, 18, rng)},
                       vocab_size=18, tokenizer=tok.identity)
    c = get_config("tiny")
    c.model.vocab_size, c.model.max_seq_len, c.model.dim, c.model.n_heads = 18, 64, 64, 1
    c.data.kind, c.data.path, c.data.seq_len = "units", str(root / "ds"), 32
    c.train.batch_size, c.train.steps, c.train.eval_every = 8, 2, 2
    c.train.progress = False
    c.checkpoint.every_steps, c.checkpoint.async_save = 1, False
    train(c, str(root / "run"))
    bench = root / "bench"
    make_lexical(bench / "lexical" / "dev", [("1", 3, "v1"), ("2", 0, "v2")])
    make_syntactic(bench / "syntactic" / "dev", [("binding", "a", "1", "v1")])
    make_storycloze(bench / "sSC", 2)
    make_storycloze(bench / "tSC", 1)
    for i, w in enumerate(sorted(bench.rglob("*.wav"))):
        _tone(w, 150 + 61 * i)
    return root


def _eval(root, *flags):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "slmjax.analysis.zeroshot.cli", f"--workdir={root / 'run'}",
           f"--benchmarks={root / 'bench'}", f"--units_cache={root / 'cache'}", *flags]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_scores_every_checkpoint_then_skips(run):
    res = _eval(run, f"--tokenizer={run / 'tok'}", "--steps=1,2")
    assert res.returncode == 0, res.stderr[-3000:]
    for step in (1, 2):
        out = run / "run" / "zeroshot" / str(step)
        scores = json.loads((out / "scores.json").read_text())
        assert scores["step"] == step
        assert scores["context"] == 32   # the run's data.seq_len, not model.max_seq_len (64)
        assert set(scores["tasks"]) == {"swuggy_dev", "sblimp_dev", "ssc", "tsc"}
        assert set(scores["test_loss"]) == {"ds"}
        assert 0 < scores["test_loss"]["ds"]["nll_per_unit"] < 10
        for conv in ("mean", "sum", "mean_eos"):
            lines = (out / conv / "lexical" / "dev.txt").read_text().splitlines()
            assert len(lines) == 4 and all(len(ln.split(" ")) == 2 for ln in lines)
    s1 = (run / "run" / "zeroshot" / "1" / "mean" / "sSC.txt").read_text()
    s2 = (run / "run" / "zeroshot" / "2" / "mean" / "sSC.txt").read_text()
    assert s1 != s2   # different weights, different scores
    again = _eval(run, f"--tokenizer={run / 'tok'}")
    assert again.returncode == 0 and "already scored" in again.stderr
    assert not again.stdout.strip()
    # Scores made with another context (or by an older slmjax, without one) are made again.
    other = _eval(run, f"--tokenizer={run / 'tok'}", "--steps=2", "--context=64")
    assert other.returncode == 0 and "scored with context 32, not 64" in other.stderr
    assert json.loads((run / "run" / "zeroshot" / "2" / "scores.json").read_text())["context"] == 64
    assert json.loads(other.stdout.strip())["step"] == 2


def test_bad_inputs_are_one_line(run):
    res = _eval(run, f"--tokenizer={run / 'tok'}", "--steps=7")
    assert res.returncode == 2 and "no checkpoint for [7]" in res.stderr
    assert "Traceback" not in res.stderr
    res = _eval(run, f"--tokenizer={run / 'tok'}", "--force", "--context=65")
    assert res.returncode == 2 and "--context=65: the scoring context must be in 1..64" in res.stderr
    res = _eval(run, "--force")   # the manifest records no tokenizer_dir and none is given
    assert res.returncode == 2 and "pass --tokenizer" in res.stderr
