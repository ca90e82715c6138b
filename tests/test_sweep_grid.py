"""Sweep expansion: keys, budgets, multi-epoch subsets, manifests and clear errors."""

import json
import os
import re

import ml_collections
import numpy as np
import pytest

from slmjax.launch import grid, trainconf
from slmjax.data.testing import random_utterances, write_unit_dataset
from slmjax.launch.commands import flag_value, train_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN_CONFIG = f"{REPO}/configs/train.py"


def tiny_sweep(**changes):
    c = ml_collections.ConfigDict()
    c.train_config = TRAIN_CONFIG
    c.data_path = ""
    c.unique_tokens = 1_000_000
    c.seq_len = 64
    c.ratios = (2, 8)
    c.sizes = ml_collections.ConfigDict({
        "a": dict(batch_size=4, train_arg="tiny",
                  overrides={"model": {"dim": 64, "n_layers": 2, "n_heads": 1}}),
        "b": dict(batch_size=8, train_arg="tiny",
                  overrides={"model": {"dim": 128, "n_layers": 3, "n_heads": 2}})})
    c.multi_epoch = ml_collections.ConfigDict(dict(sizes=("a",), epochs=(2, 4), unique_tokens=50_000))
    c.overrides = ml_collections.ConfigDict({"train": {"lr": 1e-3}, "model": {"vocab_size": 102}})
    c.key_prefix = ""
    for k, v in changes.items():
        c[k] = v
    return c


def n_params(vocab, dim, layers):
    """Independent count: tied embedding + per layer (4 d^2 attention, 3 d h SwiGLU, 2 norms) + norm."""
    hidden = 256 * -(-int(8 * dim / 3) // 256)
    return vocab * dim + layers * (4 * dim * dim + 3 * dim * hidden + 2 * dim) + dim


def test_format_tokens():
    assert grid.format_tokens(2_731_000_000) == "2.7e9"
    assert grid.format_tokens(41_421_824) == "4.1e7"
    assert grid.format_tokens(108_900_000_000) == "1.1e11"
    assert grid.format_tokens(999_999) == "1.0e6"


def test_flag_values_read_back_by_ml_collections():
    assert flag_value(True) == "true" and flag_value(3) == "3" and flag_value(5e-4) == "0.0005"
    assert flag_value(2.0) == "2" and flag_value((1, 2)) == "(1,2)" and flag_value((3,)) == "(3,)"
    assert flag_value("a,b") == "a,b"


def test_flag_values_round_trip_through_config_flags(tmp_path, monkeypatch):
    # What slmjax-train parses back: strings as given (spaces, quotes, commas), tuples as Python
    # literals (their strings quoted, their booleans True/False).
    from absl import flags
    from ml_collections import config_flags

    values = {"s": "/a b/it's \"q\",c", "ts": ("p q", "r,s", "it's"), "tb": (True, False),
              "tf": (2.5e-4, 1e20, 3.0), "tn": ((1, "x"), ()), "t1": ("one",), "f": 1e20, "b": False}
    (tmp_path / "c.py").write_text(
        "import ml_collections\n"
        "def get_config():\n"
        f"    return ml_collections.ConfigDict({ {k: type(v)() for k, v in values.items()}!r})\n")
    argv = ["prog", f"--config={tmp_path}/c.py"] + [
        f"--config.{k}={flag_value(v)}" for k, v in values.items()]
    monkeypatch.setattr("sys.argv", argv)   # config_flags finds the --config.* names in sys.argv
    fv = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", flag_values=fv)
    fv(argv)
    assert {k: holder.value[k] for k in values} == values


def test_expansion_budgets_keys_and_overrides():
    runs = grid.expand(tiny_sweep(), "/r", REPO)
    na, nb = n_params(102, 64, 2), n_params(102, 128, 3)
    assert [(r.size, r.n_params, r.tokens) for r in runs] == [
        ("a", na, 100_000), ("a", na, 200_000), ("a", na, 2 * na), ("a", na, 8 * na),
        ("b", nb, 2 * nb), ("b", nb, 8 * nb)]   # sorted by N, then D
    r = runs[3]
    assert r.key == f"a_d{grid.format_tokens(8 * na)}" and r.workdir == f"/r/{r.key}"
    assert r.steps == -(-8 * na // (4 * 64)) and r.batch_size == 4
    assert r.flops == 6 * na * 8 * na and r.epochs == 8 * na / 1_000_000
    assert train_args(r) == [
        f"--config={TRAIN_CONFIG}:tiny", f"--workdir=/r/{r.key}",
        "--config.model.dim=64", "--config.model.n_heads=1", "--config.model.n_layers=2",
        "--config.model.vocab_size=102", "--config.train.lr=0.001", "--config.data.seq_len=64",
        "--config.train.batch_size=4", f"--config.train.tokens={8 * na}",
        f"--config.train.steps={r.steps}"]
    assert grid.select(runs, "^b_") == runs[4:]
    with pytest.raises(grid.SweepError, match="matches none of the 6 runs"):
        grid.select(runs, "^zzz")
    with pytest.raises(grid.SweepError, match="is not a regular expression"):
        grid.select(runs, "(")


def test_multi_epoch_runs_are_restricted_to_their_unique_tokens():
    runs = {r.key: r for r in grid.expand(tiny_sweep(), "/r", REPO)}
    me = [r for r in runs.values() if r.restricted]
    assert [r.tokens for r in me] == [100_000, 200_000]
    for r in me:
        assert r.key.endswith("_u5.0e4") and r.unique_tokens == 50_000 and r.epochs in (2, 4)
        assert ("data.max_unique_tokens", 50_000) in r.overrides
    single = [r for r in runs.values() if not r.restricted]
    assert all(dict(r.overrides).get("data.max_unique_tokens") is None for r in single)


def test_vocabulary_and_epoch_size_from_the_datasets(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("d1", 3000), ("d2", 2000)):
        write_unit_dataset(str(tmp_path / name), {"train": random_utterances(n, 60, rng),
                                                  "test": random_utterances(20, 60, rng)},
                           vocab_size=60)
    tokens = sum(json.loads((tmp_path / d / "manifest.json").read_text())["splits"]["train"]["tokens"]
                 for d in ("d1", "d2"))
    cfg = tiny_sweep(unique_tokens=0, data_path=f"{tmp_path}/d1,{tmp_path}/d2")
    cfg.multi_epoch.unique_tokens = 0
    del cfg.overrides.model     # the vocabulary then comes from the manifests
    runs = grid.expand(cfg, "/r", REPO)
    assert all(r.unique_tokens == tokens for r in runs)
    na = n_params(60, 64, 2)
    # 2 and 4 epochs of the whole mixture, unrestricted.
    assert sorted(r.tokens for r in runs if r.size == "a") == sorted([2 * tokens, 4 * tokens, 2 * na, 8 * na])
    assert not any(r.restricted for r in runs)
    assert dict(runs[0].overrides)["data.path"] == cfg.data_path
    assert dict(runs[0].overrides)["data.kind"] == "units"
    assert dict(runs[0].overrides)["model.vocab_size"] == 60
    m = json.loads((tmp_path / "d2" / "manifest.json").read_text())
    (tmp_path / "d2" / "manifest.json").write_text(json.dumps({**m, "vocab_size": 61}))
    with pytest.raises(grid.SweepError, match=r"mixes datasets with vocab sizes \[60, 61\]"):
        grid.expand(cfg, "/r", REPO)


def test_epoch_size_of_synthetic_data_is_counted_by_the_data_package():
    runs = grid.expand(tiny_sweep(unique_tokens=0, multi_epoch=ml_collections.ConfigDict(
        dict(sizes=(), epochs=(), unique_tokens=0))), "/r", REPO)
    from slmjax.data import open_datasets
    cfg = trainconf.load(TRAIN_CONFIG, "tiny", [("model.vocab_size", 102)], REPO)
    want = sum(ds.splits["train"].n_tokens for ds in open_datasets(cfg))
    assert want > 0 and all(r.unique_tokens == want for r in runs)


@pytest.mark.parametrize("change, message", [
    (dict(ratios=(2, 0)), "ratios must be positive numbers, got 0"),
    (dict(seq_len=0), "seq_len must be a positive integer, got 0"),
    (dict(overrides=ml_collections.ConfigDict({"train": {"nope": 1}})),
     "the training config has no field 'train.nope'"),
    (dict(overrides=ml_collections.ConfigDict({"nope": {"x": 1}})),
     "the training config has no section 'nope'"),
    (dict(train_config="configs/missing.py"), "train_config='configs/missing.py': no such file"),
    # a sweep config given for the training one ended in an AttributeError traceback
    (dict(train_config="configs/sweeps/cpu_mini.py"),
     "configs/sweeps/cpu_mini.py:tiny: not a training config (no model, train, data or mesh "
     "section; configs/train.py is one)"),
    (dict(seq_len=4096), "data.seq_len=4096 must be in 1..model.max_seq_len=2050"),
    (dict(ratios=(2, 2.01)), "two runs share the key"),
    (dict(ratios=(2, float("nan"))), "ratios must be positive numbers, got nan"),
    (dict(ratios=(float("inf"),)), "ratios must be positive numbers, got inf"),
    (dict(multi_epoch=ml_collections.ConfigDict(dict(sizes=("a",), epochs=(2, float("inf")),
                                                     unique_tokens=50_000))),
     "multi_epoch.epochs must be a positive integer, got inf"),
])
def test_bad_sweeps_are_one_clear_error(change, message):
    with pytest.raises(grid.SweepError, match=message.replace("(", r"\(").replace(")", r"\)")):
        grid.expand(tiny_sweep(**change), "/r", REPO)


def test_missing_train_config_names_the_places_looked_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(grid.SweepError) as e:
        trainconf.load("configs/missing.py", "tiny", [])
    assert str(e.value) == f"train_config='configs/missing.py': no such file (looked in {tmp_path})"
    with pytest.raises(grid.SweepError) as e:
        trainconf.load("configs/missing.py", "tiny", [], REPO)
    assert str(e.value).endswith(f"(looked in {tmp_path} and {REPO})")


def test_multi_epoch_errors():
    cfg = tiny_sweep()
    cfg.multi_epoch.sizes = ("c",)
    with pytest.raises(grid.SweepError, match="multi_epoch.sizes names 'c', not one of sizes: a, b"):
        grid.expand(cfg, "/r", REPO)
    cfg = tiny_sweep(unique_tokens=0)
    cfg.multi_epoch.unique_tokens = 0
    cfg.data_path = "/nonexistent/units"
    with pytest.raises(grid.SweepError, match="multi_epoch needs unique_tokens"):
        grid.expand(cfg, "/r", REPO)


def test_larger_batches_for_named_ratios():
    cfg = tiny_sweep()
    cfg.sizes.b.batch_size_by_ratio = ((8, 16),)
    runs = [r for r in grid.expand(cfg, "/r", REPO) if r.size == "b"]
    assert [r.batch_size for r in runs] == [8, 16]
    assert runs[1].steps == -(-runs[1].tokens // (16 * 64))
    # an entry for a ratio the size does not run (a typo: 80 for 8) is refused, not ignored
    cfg.sizes.b.batch_size_by_ratio = ((80, 16),)
    with pytest.raises(grid.SweepError, match=r"sizes\.b\.batch_size_by_ratio names D/N = 80, a "
                       r"ratio b does not run \(ratios: \(2, 8\)\)"):
        grid.expand(cfg, "/r", REPO)


def test_a_size_may_name_its_own_ratios():
    cfg = tiny_sweep()
    cfg.sizes.b.ratios = (1, 4, 32)
    runs = grid.expand(cfg, "/r", REPO)
    single = {s: sorted(r.ratio for r in runs if r.size == s and not r.restricted) for s in "ab"}
    assert single["a"] == pytest.approx([2, 8]) and single["b"] == pytest.approx([1, 4, 32])
    nb = n_params(102, 128, 3)
    assert sorted(r.tokens for r in runs if r.size == "b") == [nb, 4 * nb, 32 * nb]
    cfg.sizes.b.ratios = ()       # no single-epoch runs for b (not: the sweep's ratios)
    assert not [r for r in grid.expand(cfg, "/r", REPO) if r.size == "b"]
    cfg.sizes.b.ratios = (4, -1)
    with pytest.raises(grid.SweepError, match="sizes.b.ratios must be positive numbers, got -1"):
        grid.expand(cfg, "/r", REPO)
    cfg.sizes.b = ml_collections.ConfigDict(dict(cfg.sizes.b.to_dict(), ratios=5))
    with pytest.raises(grid.SweepError, match="sizes.b.ratios must be a tuple of positive numbers"):
        grid.expand(cfg, "/r", REPO)


def test_restricted_runs_use_the_training_config_field():
    runs = grid.expand(tiny_sweep(train_config="configs/train.py"), "/r", REPO)
    me = [r for r in runs if r.restricted]
    assert len(me) == 2 and all(("data.max_unique_tokens", 50_000) in r.overrides for r in me)
    with pytest.raises(grid.SweepError, match="multi_epoch.unique_tokens=2000000 exceeds the "
                       "1000000 training tokens"):
        grid.expand(tiny_sweep(multi_epoch=ml_collections.ConfigDict(
            dict(sizes=("a",), epochs=(2,), unique_tokens=2_000_000))), "/r", REPO)


def test_run_keys_are_safe_as_directory_and_job_names():
    # A key is a workdir name under the root, a SLURM job name and part of an #SBATCH line.
    assert grid.expand(tiny_sweep(key_prefix="v2.1-"), "/r", REPO)[0].key.startswith("v2.1-a_d")
    for prefix in ("my run_", "sub/", "50%_", "x#"):
        with pytest.raises(grid.SweepError, match="key_prefix"):
            grid.expand(tiny_sweep(key_prefix=prefix), "/r", REPO)


@pytest.mark.parametrize("pairs", [((8,),), (8, 16), ((8, 16, 32),), (("x", 16),)])
def test_malformed_batch_size_by_ratio_is_one_clear_error(pairs):
    # Each entry is (D/N ratio, batch size); anything else was a ValueError traceback from unpacking.
    cfg = tiny_sweep()
    cfg.sizes.b.batch_size_by_ratio = pairs
    with pytest.raises(grid.SweepError, match=r"sizes\.b\.batch_size_by_ratio must be \(ratio, "
                       r"batch_size\) pairs"):
        grid.expand(cfg, "/r", REPO)


def test_a_dataset_given_with_a_tilde_is_read_as_the_trainer_reads_it(tmp_path, monkeypatch):
    # The trainer's data package expands ~ in data.path; the sweep read the manifest at the literal
    # '~/units', missed it, and so planned every run with the config's 102-unit vocabulary: N (and
    # with it D, the keys and the steps) differed from the run the trainer builds, and from the
    # same sweep given the absolute path.
    monkeypatch.setenv("HOME", str(tmp_path))
    rng = np.random.default_rng(0)
    write_unit_dataset(str(tmp_path / "units"), {"train": random_utterances(300, 60, rng),
                                                 "test": random_utterances(20, 60, rng)},
                       vocab_size=60)
    cfg = tiny_sweep(data_path="~/units", multi_epoch=ml_collections.ConfigDict(
        dict(sizes=(), epochs=(), unique_tokens=0)))
    runs = grid.expand(cfg, "/r", REPO)
    na = n_params(60, 64, 2)   # 60 unit ids, from the manifest
    assert sorted(r.tokens for r in runs if r.size == "a") == [2 * na, 8 * na]
    assert all(dict(r.overrides)["model.vocab_size"] == 60 for r in runs)
    keys = [r.key for r in runs]
    absolute = tiny_sweep(data_path=f"{tmp_path}/units", multi_epoch=cfg.multi_epoch)
    assert keys == [r.key for r in grid.expand(absolute, "/r", REPO)]


@pytest.mark.parametrize("text, says", [
    ("def get_config(arg=None:\n    pass\n", "cannot be loaded: SyntaxError: invalid syntax (line 1)"),
    ("import nonexistent_module_xyz\n", "cannot be loaded: ModuleNotFoundError: No module named"),
    ("def get_config(arg=None):\n    return undefined_name\n", "get_config failed: NameError"),
])
def test_a_broken_training_config_file_is_one_clear_error(tmp_path, text, says):
    path = tmp_path / "broken_train.py"
    path.write_text(text)
    with pytest.raises(grid.SweepError, match=re.escape(says)):
        grid.expand(tiny_sweep(train_config=str(path)), "/r", REPO)


@pytest.mark.parametrize("text, says", [
    ("def get_config(arg=None:\n    pass\n", "cannot load the --config file: SyntaxError: invalid syntax"),
    ("def get_config(arg=None):\n    return undefined_name\n",
     "cannot load the --config file: NameError: name 'undefined_name' is not defined"),
])
def test_a_broken_sweep_file_is_one_line_without_a_traceback(tmp_path, text, says):
    import subprocess
    import sys

    path = tmp_path / "sweep.py"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "slmjax.launch.cli", f"--config={path}",
                           f"--root={tmp_path / 'runs'}", "--dry_run"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert says in proc.stderr, proc.stderr[-2000:]
