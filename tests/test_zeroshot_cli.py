"""slmjax-eval on a real run: a tiny model trained for a few steps on a unit dataset whose tokenizer
is an MFCC tokenizer; every checkpoint scored, already-scored ones skipped or completed, --steps,
bad input."""

import json
import os
import shutil
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


def _cli(*flags):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "slmjax.analysis.zeroshot.cli", *flags],
                          capture_output=True, text=True, env=env, timeout=600)


def _eval(root, *flags, workdir=None, bench=None):
    return _cli(f"--workdir={workdir or root / 'run'}", f"--benchmarks={bench or root / 'bench'}",
                f"--units_cache={root / 'cache'}", *flags)


def _scores(workdir, step=2):
    return json.loads((workdir / "zeroshot" / str(step) / "scores.json").read_text(),
                      parse_constant=lambda c: pytest.fail(f"{c} in scores.json"))


def _copy_run(run, tmp_path):
    shutil.copytree(run / "run", tmp_path / "run", ignore=shutil.ignore_patterns("zeroshot"))
    return tmp_path / "run"


def _eval_step2(run, workdir, *flags, bench=None):
    return _eval(run, f"--tokenizer={run / 'tok'}", "--steps=2", *flags, workdir=workdir,
                 bench=bench)


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
    # A step scored before items/ was written gets it from per_file/, without a model run.
    items1 = run / "run" / "zeroshot" / "1" / "items"
    written = {p.name: p.read_text() for p in items1.iterdir()}
    assert set(written) == {"swuggy_dev.tsv", "sblimp_dev.tsv", "ssc.tsv", "tsc.tsv"}
    shutil.rmtree(items1)
    again = _eval(run, f"--tokenizer={run / 'tok'}")
    assert again.returncode == 0 and "already scored" in again.stderr
    assert not again.stdout.strip()
    assert "step 1: wrote items/ of ['swuggy_dev', 'sblimp_dev', 'ssc', 'tsc'] from per_file/" in again.stderr
    assert {p.name: p.read_text() for p in items1.iterdir()} == written
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


def test_steps_naming_no_step_is_one_line(run):
    """--steps= (an empty $STEPS in a script) or --steps=, scored nothing and exited 0 silently."""
    for steps in ("", ",", " , "):
        res = _eval(run, f"--tokenizer={run / 'tok'}", f"--steps={steps}")
        assert res.returncode == 2, (steps, res.stderr[-2000:])
        assert f"slmjax-eval: error: --steps={steps!r} names no step; expected all, last or a comma " \
               "list of integers" in res.stderr and "Traceback" not in res.stderr


def test_later_calls_score_only_what_is_missing(run, tmp_path):
    wd = _copy_run(run, tmp_path)
    bench2 = tmp_path / "bench2"
    shutil.copytree(run / "bench", bench2)
    first = _eval_step2(run, wd, "--tasks=ssc")
    assert first.returncode == 0, first.stderr[-3000:]
    ssc = _scores(wd)["tasks"]["ssc"]
    # Another task: added to the record, which keeps ssc and the test loss as they were.
    res = _eval_step2(run, wd, "--tasks=tsc")
    assert res.returncode == 0 and "already scored" not in res.stderr, res.stderr[-3000:]
    assert f"step 2: scoring ['tsc'] into {wd / 'zeroshot' / '2' / 'scores.json'}" in res.stderr
    scores = _scores(wd)
    assert set(scores["tasks"]) == {"ssc", "tsc"} and scores["tasks"]["ssc"] == ssc
    assert set(scores["test_loss"]) == {"ds"}
    assert set(json.loads(res.stdout)) == {"step", "ssc", "tsc"}
    # Another benchmark root: every set of it scored, in place of the same sets of the first root.
    res = _eval_step2(run, wd, bench=bench2)
    assert res.returncode == 0 and "already scored" not in res.stderr, res.stderr[-3000:]
    tasks = _scores(wd)["tasks"]
    assert {name: t["directory"] for name, t in tasks.items()} == {
        "swuggy_dev": str(bench2 / "lexical" / "dev"), "sblimp_dev": str(bench2 / "syntactic" / "dev"),
        "ssc": str(bench2 / "sSC"), "tsc": str(bench2 / "tSC")}
    assert tasks["ssc"]["conventions"] == ssc["conventions"]   # same audio, same scores
    again = _eval_step2(run, wd, bench=bench2)
    assert again.returncode == 0 and "step 2 already scored" in again.stderr
    assert not again.stdout.strip()
    for flags in ([], ["--force"]):
        res = _eval_step2(run, wd, *flags, bench=tmp_path / "nonexistent")
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert [ln for ln in res.stderr.splitlines() if "slmjax-eval" in ln] == [
            f"slmjax-eval: error: benchmarks root {tmp_path / 'nonexistent'} is not a directory"]
    # The run's model.dtype=auto was float32 on this CPU: the record names the dtype it ran in.
    assert _scores(wd)["compute_dtype"] == "float32"
    res = _eval_step2(run, wd, "--tasks=ssc", "--dtype=float32", bench=bench2)
    assert res.returncode == 0 and "step 2 already scored" in res.stderr, res.stderr[-3000:]
    # Another compute dtype: scored again, not mixed with the record.
    res = _eval_step2(run, wd, "--tasks=ssc", "--dtype=bfloat16", bench=bench2)
    assert res.returncode == 0, res.stderr[-3000:]
    assert ("scored with compute_dtype float32, not bfloat16: scoring again (its sets not asked now "
            "are dropped: ['sblimp_dev', 'swuggy_dev', 'tsc'])") in res.stderr
    scores = _scores(wd)
    assert set(scores["tasks"]) == {"ssc"} and scores["compute_dtype"] == "bfloat16"


def test_set_with_every_file_silent_is_null_and_named(run, tmp_path):
    wd = _copy_run(run, tmp_path)
    bench = tmp_path / "bench"
    shutil.copytree(run / "bench", bench)
    silent = sorted((bench / "syntactic" / "dev").glob("*.wav"))
    for wav in silent:
        soundfile.write(str(wav), np.zeros(4800, np.float32), 16000)
    res = _eval_step2(run, wd, "--tasks=sblimp,ssc", bench=bench)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [ln.split("] ", 1)[1] for ln in res.stderr.splitlines() if "files skipped" in ln] == [
        "sblimp_dev: 2 of 2 files skipped (unreadable, empty, silent or no units), no pair left: no "
        "score; each one and why: tasks.sblimp_dev.skipped_files in "
        f"{wd / 'zeroshot' / '2' / 'scores.json'}"]
    assert set(json.loads(res.stdout)) == {"step", "ssc"}
    entry = _scores(wd)["tasks"]["sblimp_dev"]
    assert sorted(entry["skipped_files"]) == [w.stem for w in silent]
    assert all("silent" in why for why in entry["skipped_files"].values())
    assert {row["accuracy"] for rows in entry["conventions"].values() for row in rows} == {None}
    check = _cli("--validate", f"--benchmarks={bench}")
    assert check.returncode == 1
    assert sum(f"{w}: silent: peak amplitude below 0.0001" in check.stdout for w in silent) == 2


def _submission(out, conv, rel):
    return dict(ln.split(" ") for ln in (out / conv / rel).read_text().splitlines())


def test_test_splits_without_gold_are_scored_for_the_submission(run, tmp_path):
    wd = _copy_run(run, tmp_path)
    bench = tmp_path / "bench"
    shutil.copytree(run / "bench", bench)
    first = _eval_step2(run, wd, bench=bench)
    assert first.returncode == 0, first.stderr[-3000:]
    dev = _scores(wd)
    # The public ZeroSpeech download: test wavs without gold.csv (here the dev wavs again).
    for folder in ("lexical", "syntactic"):
        (bench / folder / "test").mkdir()
        for wav in (bench / folder / "dev").glob("*.wav"):
            shutil.copy(wav, bench / folder / "test" / wav.name)
    check = _cli("--validate", f"--benchmarks={bench}")
    assert check.returncode == 0, check.stdout
    assert (f"note: {bench / 'lexical' / 'test'}: no gold.csv (as in the public test download): "
            "submission only, its 4 files scored for lexical/test.txt, no accuracy") in check.stdout
    assert ("sblimp_test: submission only (no gold.csv), 2 files in "
            f"{bench / 'syntactic' / 'test'}") in check.stdout
    assert check.stdout.splitlines()[-1].startswith("0 errors, ") and " 2 notes" in check.stdout
    res = _eval_step2(run, wd, bench=bench)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "step 2: scoring ['swuggy_test', 'sblimp_test'] into" in res.stderr
    scores = _scores(wd)
    assert scores["tasks"] == dev["tasks"] and scores["headline"] == dev["headline"]
    assert {name: (e["directory"], e["n_files"], e["n_skipped"], "conventions" in e)
            for name, e in scores["submission_only"].items()} == {
        "swuggy_test": (str(bench / "lexical" / "test"), 4, 0, False),
        "sblimp_test": (str(bench / "syntactic" / "test"), 2, 0, False)}
    out = wd / "zeroshot" / "2"
    for conv in ("mean", "sum", "mean_eos"):
        for folder in ("lexical", "syntactic"):
            gold, test = (_submission(out, conv, f"{folder}/{split}.txt")
                          for split in ("dev", "test"))
            assert len((out / conv / folder / "test.txt").read_text().splitlines()) == len(test)
            assert set(test) == set(gold)   # every stem once
            assert all(float(test[s]) == pytest.approx(float(gold[s]), rel=1e-5) for s in gold)
    again = _eval_step2(run, wd, bench=bench)
    assert again.returncode == 0 and "step 2 already scored" in again.stderr, again.stderr[-3000:]
    # Gold that arrives later is scored: the set moves from submission_only to tasks.
    shutil.copy(bench / "lexical" / "dev" / "gold.csv", bench / "lexical" / "test" / "gold.csv")
    res = _eval_step2(run, wd, bench=bench)
    assert res.returncode == 0 and "scoring ['swuggy_test'] into" in res.stderr, res.stderr[-3000:]
    scores = _scores(wd)
    assert set(scores["submission_only"]) == {"sblimp_test"}
    assert (scores["tasks"]["swuggy_test"]["conventions"] ==
            scores["tasks"]["swuggy_dev"]["conventions"])

def test_release_checkpoint_that_is_not_one_is_one_line(tmp_path):
    bad_config = tmp_path / "release"
    bad_config.mkdir()
    (bad_config / "config.json").write_text('{"model_args": {"dim": 64')
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("hello")
    for path, why in ((bad_config, f"release checkpoint config {bad_config / 'config.json'} is not "
                       "valid JSON (Expecting ',' delimiter: line 1 column 26 (char 25))"),
                      (not_a_checkpoint, f"{not_a_checkpoint}: not a release checkpoint (")):
        res = _cli(f"--release_checkpoint={path}", f"--tokenizer={tmp_path}",
                   f"--benchmarks={tmp_path}", f"--out={tmp_path / 'out'}")
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
        assert res.stderr.strip().startswith(f"slmjax-eval: error: {why}"), res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_step_saved_again_is_scored_again(run, tmp_path):
    """A run trained anew in the same workdir saves other weights under the same step: its old
    scores must not be taken for the new checkpoint's."""
    wd = _copy_run(run, tmp_path)
    res = _eval(run, f"--tokenizer={run / 'tok'}", "--steps=1,2", workdir=wd)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = wd / "checkpoints"
    shutil.rmtree(ckpt / "2")
    shutil.copytree(ckpt / "1", ckpt / "2")   # step 2 now holds step 1's weights
    res = _eval_step2(run, wd)
    assert res.returncode == 0 and "already scored" not in res.stderr, res.stderr[-3000:]
    assert "was scored with checkpoint " in res.stderr
    out = wd / "zeroshot"
    for rel in ("mean/sSC.txt", "sum/lexical/dev.txt", "mean_eos/syntactic/dev.txt"):
        assert (out / "2" / rel).read_text() == (out / "1" / rel).read_text()
    assert _scores(wd)["test_loss"] == _scores(wd, step=1)["test_loss"]


def test_benchmark_rewritten_in_place_is_scored_again(run, tmp_path):
    """A benchmark folder made again at the same path (new audio, new gold.csv) is not the set
    the record scored: its scores are made again, not kept."""
    wd = _copy_run(run, tmp_path)
    bench = tmp_path / "bench"
    shutil.copytree(run / "bench", bench)
    res = _eval_step2(run, wd, "--tasks=ssc,swuggy", bench=bench)
    assert res.returncode == 0, res.stderr[-3000:]
    out = wd / "zeroshot" / "2"
    before = _submission(out, "mean", "sSC.txt")
    a, b = bench / "sSC" / "0_story000_correct.wav", bench / "sSC" / "1_story000_incorrect.wav"
    swap = tmp_path / "swap.wav"
    shutil.copy(a, swap), shutil.copy(b, a), shutil.copy(swap, b)   # the two endings swapped
    gold = bench / "lexical" / "dev" / "gold.csv"
    rows = gold.read_text().splitlines()
    flipped = [rows[0]] + [r[:-1] + ("0" if r.endswith("1") else "1") for r in rows[1:]]
    gold.write_text("\n".join(flipped) + "\n")   # the words become the non-words
    swuggy = {r["metric"]: r["accuracy"] for r in _scores(wd)["tasks"]["swuggy_dev"]
              ["conventions"]["mean"]}
    res = _eval_step2(run, wd, "--tasks=ssc,swuggy", bench=bench)
    assert res.returncode == 0 and "already scored" not in res.stderr, res.stderr[-3000:]
    after = _submission(out, "mean", "sSC.txt")
    assert (after[a.stem], after[b.stem]) == (before[b.stem], before[a.stem])
    flipped_rows = {r["metric"]: r["accuracy"] for r in _scores(wd)["tasks"]["swuggy_dev"]
                    ["conventions"]["mean"]}
    assert flipped_rows["all"] == pytest.approx(1 - swuggy["all"])


def test_bad_test_data_is_refused_before_any_scoring(run, tmp_path):
    """A --test_data dataset that is missing, lacks a test split or holds other units stopped the
    step only after every benchmark was scored (no scores.json), or gave a test loss of other
    units."""
    from slmjax.data.testing import random_utterances, write_unit_dataset
    wd = _copy_run(run, tmp_path)
    rng = np.random.default_rng(3)
    write_unit_dataset(str(tmp_path / "other"), {"test": random_utterances(4, 18, rng)},
                       vocab_size=18)   # another tokenizer
    write_unit_dataset(str(tmp_path / "notest"), {"train": random_utterances(4, 18, rng)},
                       vocab_size=18, tokenizer=json.loads(
                           (run / "ds" / "manifest.json").read_text())["tokenizer"])
    for ds, why in (("missing", "is not a unit dataset (no manifest.json)"),
                    ("notest", "has no 'test' split (splits: ['train'])"),
                    ("other", "was encoded with tokenizer {'kind': 'test'")):
        res = _eval_step2(run, wd, f"--test_data={tmp_path / ds}")
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
        errors = [ln for ln in res.stderr.splitlines() if "slmjax-eval: error" in ln]
        assert len(errors) == 1 and why in errors[0], res.stderr[-3000:]
        assert "scoring" not in res.stderr and not (wd / "zeroshot").exists()


def test_other_test_data_of_the_same_name_is_not_taken_for_the_first(run, tmp_path):
    """The run's own held-out 'ds', then --test_data=OTHER/ds (same tokenizer, other units): the
    second test loss is of OTHER/ds, not the first one's kept."""
    from slmjax.data.testing import random_utterances, write_unit_dataset
    wd = _copy_run(run, tmp_path)
    res = _eval_step2(run, wd, "--tasks=ssc")
    assert res.returncode == 0, res.stderr[-3000:]
    first = _scores(wd)["test_loss"]["ds"]
    utts = random_utterances(6, 18, np.random.default_rng(7))
    write_unit_dataset(str(tmp_path / "other" / "ds"), {"test": utts}, vocab_size=18,
                       tokenizer=json.loads((run / "ds" / "manifest.json").read_text())["tokenizer"])
    res = _eval_step2(run, wd, "--tasks=ssc", f"--test_data={tmp_path / 'other' / 'ds'}")
    assert res.returncode == 0 and "already scored" not in res.stderr, res.stderr[-3000:]
    got = _scores(wd)["test_loss"]["ds"]
    assert got["n_utterances"] == 6 and got["n_tokens"] == sum(len(u) for u in utts) - 1
    assert got["n_tokens"] != first["n_tokens"]


def test_run_without_unit_datasets_is_scored_again_with_another_tokenizer(run, tmp_path):
    """A run on synthetic units names no tokenizer of its own: the one given (--tokenizer) keys
    its scores, so scores made with another one are not kept."""
    from slmjax.units.features import MfccFeatures
    from slmjax.units.mfcc import MfccConfig
    from slmjax.units.tokenizer import save_tokenizer
    wd = _copy_run(run, tmp_path)
    config = json.loads((wd / "config.json").read_text())
    config["data"]["kind"] = "synthetic"
    (wd / "config.json").write_text(json.dumps(config))
    cents = np.random.default_rng(9).normal(size=(16, 39)).astype(np.float32) * 20
    other = save_tokenizer(str(tmp_path / "tok2"), MfccFeatures(MfccConfig()), cents, {})
    flags = ("--steps=2", "--tasks=ssc", "--test_data=")
    res = _eval(run, f"--tokenizer={run / 'tok'}", *flags, workdir=wd)
    assert res.returncode == 0, res.stderr[-3000:]
    res = _eval(run, f"--tokenizer={tmp_path / 'tok2'}", *flags, workdir=wd)
    assert res.returncode == 0 and "already scored" not in res.stderr, res.stderr[-3000:]
    assert "was scored with tokenizer" in res.stderr
    assert _scores(wd)["tokenizer"] == other.identity


def test_an_output_folder_that_cannot_be_written_is_refused_before_scoring(run, tmp_path):
    """RUN/zeroshot a file (or any folder that cannot be made): a traceback after the first set
    was scored, its work lost; now one line before any scoring."""
    wd = _copy_run(run, tmp_path)
    (wd / "zeroshot").write_text("not a folder")
    res = _eval_step2(run, wd, "--tasks=ssc")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [ln for ln in res.stderr.splitlines() if "slmjax-eval: error" in ln]
    assert len(errors) == 1 and f"{wd / 'zeroshot'} is not a directory" in errors[0], \
        res.stderr[-3000:]
    assert "scoring" not in res.stderr


def test_tokens_per_batch_below_one_is_refused(run, tmp_path):
    wd = _copy_run(run, tmp_path)
    res = _eval_step2(run, wd, "--tasks=ssc", "--tokens_per_batch=-5")
    assert res.returncode == 2 and "--tokens_per_batch=-5" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("record", [{"tasks": {"ssc": 3}}, {"tasks": [], "submission_only": []},
                                    {"tasks": {"ssc": {"directory": 1}}},
                                    {"test_loss": {"ds": "x"}}, {"timing": {"seconds": "1"}}])
def test_scores_json_of_another_shape_is_scored_again_not_a_traceback(run, tmp_path, record):
    """A scores.json that is a JSON object but not of the shape slmjax-eval writes (edited by
    hand, made by another tool) is one warning line and is written anew; merging into it stopped
    with an AttributeError or TypeError traceback."""
    wd = _copy_run(run, tmp_path)
    path = wd / "zeroshot" / "2" / "scores.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    res = _eval_step2(run, wd, "--tasks=ssc", "--test_data=")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert f"{path} cannot be read (its " in res.stderr
    scores = _scores(wd)
    assert set(scores["tasks"]) == {"ssc"} and set(scores["headline"]) == {"ssc"}
