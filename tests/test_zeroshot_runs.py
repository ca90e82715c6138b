"""Held-out test loss against a closed form; what a run's files say about its tokenizer."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from slmjax.analysis.zeroshot import runs
from slmjax.analysis.zeroshot.errors import ZeroShotError
from slmjax.analysis.zeroshot.scoring import Scorer
from slmjax.analysis.zeroshot.testloss import HeldOutSet, heldout_loss, stream_windows
from slmjax.data.testing import random_utterances, write_unit_dataset

V = 12


def test_heldout_loss_is_mean_nll_per_unit(tmp_path):
    rng = np.random.default_rng(0)
    utts = random_utterances(17, V, rng, mean_len=12)
    write_unit_dataset(str(tmp_path / "ds"), {"train": utts[:2], "test": utts}, vocab_size=V)
    table = rng.normal(size=(V, V)).astype(np.float32)
    scorer = Scorer(lambda p, x, pos, seg: p[x], jnp.asarray(table), max_len=16, pad_id=V - 1,
                    progress=False)
    got = heldout_loss(scorer, tmp_path / "ds")
    stream = np.concatenate(utts)
    t = table.astype(np.float64)
    logp = t - np.log(np.exp(t).sum(1, keepdims=True))
    want = -np.mean([logp[a, b] for a, b in zip(stream[:-1], stream[1:])])
    assert got["n_tokens"] == len(stream) - 1 and got["n_utterances"] == 17
    assert got["nll_per_unit"] == pytest.approx(want, rel=1e-6)


def test_stream_windows_predict_every_token_once():
    recs = [np.arange(5), np.arange(7), np.arange(3)]
    wins = stream_windows(recs, 4)
    assert sum(len(w) - 1 for w in wins) == 14
    assert all(len(w) <= 5 for w in wins)
    np.testing.assert_array_equal(np.concatenate([wins[0]] + [w[1:] for w in wins[1:]]),
                                  np.concatenate(recs))


def _run(tmp_path, manifest_extra=None, kind="units"):
    ds = tmp_path / "ds"
    ident = {"kind": "fake", "k": 20, "centroids_sha256": "0" * 8, "coarse": None}
    write_unit_dataset(str(ds), {"train": [np.array([1, 20])], "test": [np.array([2, 20])]},
                       vocab_size=22, tokenizer=ident)
    if manifest_extra:
        m = json.loads((ds / "manifest.json").read_text())
        m.update(manifest_extra)
        (ds / "manifest.json").write_text(json.dumps(m))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": {"kind": kind, "path": str(ds)}}))
    return run, ident


def test_run_units_and_heldout_sets(tmp_path):
    run, ident = _run(tmp_path, {"tokenizer_dir": "../tok"})
    units = runs.run_units(run)
    assert units.identity == ident and units.eos_id == 20 and units.pad_id == 21
    assert units.tokenizer_dir == str(tmp_path / "ds" / "../tok")
    assert runs.heldout_datasets(units) == {"ds": HeldOutSet(str(tmp_path / "ds"), "test", 0.01)}


def test_data_path_under_home_is_read_as_the_trainer_reads_it(tmp_path, monkeypatch):
    """config.json keeps data.path as given: `--config.data.path=~/ds` (the shell leaves a tilde
    after `--flag=` alone) trained on $HOME/ds, but slmjax-eval looked for WORKDIR/~/ds/manifest.json
    and stopped with 'unit dataset manifest not found'."""
    run, ident = _run(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    (run / "config.json").write_text(json.dumps({"data": {"kind": "units", "path": "~/ds,"}}))
    units = runs.run_units(run)
    assert units.identity == ident
    assert runs.heldout_datasets(units) == {"ds": HeldOutSet(str(tmp_path / "ds"), "test", 0.01)}


def test_relative_data_path_is_read_where_the_trainer_resolved_it(tmp_path, monkeypatch):
    """A relative data.path is relative to the folder the trainer ran in, which run.json records
    (data.datasets[*].path, absolute); slmjax-eval tried its own folder, then the workdir, and
    read another dataset of the same relative name there (or none)."""
    run, ident = _run(tmp_path)
    (run / "config.json").write_text(json.dumps({"data": {"kind": "units", "path": "ds"}}))
    (run / "run.json").write_text(json.dumps({"data": {"datasets": [
        {"name": "ds", "path": str(tmp_path / "ds")}]}}))
    # a decoy of the same relative name in the workdir, made with another tokenizer
    other = {"kind": "fake", "k": 20, "centroids_sha256": "1" * 8, "coarse": None}
    write_unit_dataset(str(run / "ds"), {"train": [np.array([1, 20])],
                                         "test": [np.array([2, 20])]},
                       vocab_size=22, tokenizer=other)
    monkeypatch.chdir(run)   # slmjax-eval run from elsewhere than the trainer was
    units = runs.run_units(run)
    assert units.identity == ident
    assert runs.heldout_datasets(units) == {"ds": HeldOutSet(str(tmp_path / "ds"), "test", 0.01)}
    # without a usable record (moved data, no run.json) the search is as before
    (run / "run.json").write_text(json.dumps({"data": {"datasets": [
        {"name": "ds", "path": str(tmp_path / "gone")}]}}))
    assert runs.run_units(run).identity == other


def test_synthetic_datasets_only_when_no_natural_one(tmp_path):
    run, _ = _run(tmp_path, {"synthetic": True})
    units = runs.run_units(run)
    assert runs.heldout_datasets(units) == {"ds": HeldOutSet(str(tmp_path / "ds"), "test", 0.01)}
    natural = tmp_path / "nat"
    write_unit_dataset(str(natural), {"test": [np.array([3, 20])]}, vocab_size=22,
                       tokenizer=units.identity)
    units.datasets.append((natural, json.loads((natural / "manifest.json").read_text())))
    assert runs.heldout_datasets(units) == {"nat": HeldOutSet(str(natural), "test", 0.01)}


def test_tokenizer_mismatch_refused(tmp_path):
    from slmjax.units.features import MfccFeatures
    from slmjax.units.mfcc import MfccConfig
    from slmjax.units.tokenizer import save_tokenizer
    run, _ = _run(tmp_path)
    save_tokenizer(str(tmp_path / "tok"), MfccFeatures(MfccConfig()),
                   np.zeros((20, 39), np.float32), {})
    with pytest.raises(ZeroShotError, match="refusing to score with other units"):
        runs.load_run_tokenizer(runs.run_units(run), str(tmp_path / "tok"))
    with pytest.raises(ZeroShotError, match="pass --tokenizer"):
        runs.load_run_tokenizer(runs.run_units(run), None)


def test_missing_config_is_one_clear_error(tmp_path):
    with pytest.raises(ZeroShotError, match="run config not found"):
        runs.run_units(tmp_path)


def test_config_that_is_not_a_json_object_is_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ZeroShotError, match=r"run config .*config.json is not a JSON object \(a list\)"):
        runs.run_units(tmp_path)
    (tmp_path / "config.json").write_bytes(b'{"data": "\xe9"}')
    with pytest.raises(ZeroShotError, match="run config .*config.json is not valid JSON"):
        runs.run_units(tmp_path)


def test_datasets_of_the_same_folder_name_each_get_a_test_loss(tmp_path):
    """data.path=/x/librispeech/units,/x/librilight/units: two test sets, not one under 'units'."""
    ident = {"kind": "fake", "k": 20, "centroids_sha256": "0" * 8, "coarse": None}
    paths = [tmp_path / "librispeech" / "units", tmp_path / "librilight" / "units"]
    for i, ds in enumerate(paths):
        write_unit_dataset(str(ds), {"test": [np.array([i, 20])]}, vocab_size=22, tokenizer=ident)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(
        {"data": {"kind": "units", "path": ",".join(map(str, paths))}}))
    assert runs.heldout_datasets(runs.run_units(run)) == {
        "librispeech/units": HeldOutSet(str(paths[0]), "test", 0.01),
        "librilight/units": HeldOutSet(str(paths[1]), "test", 0.01)}
    assert runs.named_test_sets(map(str, [tmp_path / "ds", *paths])) == {
        "ds": HeldOutSet(str(tmp_path / "ds")),
        "librispeech/units": HeldOutSet(str(paths[0])),
        "librilight/units": HeldOutSet(str(paths[1]))}


def test_the_trainer_and_the_scorer_name_datasets_alike(tmp_path):
    """run.json's test_loss_by_dataset and scores.json's test_loss use one set of keys: the trainer
    named two 'units' folders 0_units and 1_units, slmjax-eval librispeech/units and
    librilight/units."""
    import ml_collections

    from slmjax.data import build_pipeline
    ident = {"kind": "fake", "k": 20, "centroids_sha256": "0" * 8, "coarse": None}
    paths = [tmp_path / "librispeech" / "units", tmp_path / "librilight" / "units"]
    rng = np.random.default_rng(0)
    for ds in paths:
        write_unit_dataset(str(ds), {"train": random_utterances(40, 22, rng, mean_len=8),
                                     "test": random_utterances(8, 22, rng, mean_len=8)},
                           vocab_size=22, tokenizer=ident)
    data = {"kind": "units", "path": ",".join(map(str, paths)), "seq_len": 8, "mode": "windows",
            "weights": None}
    pipeline = build_pipeline(ml_collections.ConfigDict(
        {"seed": 0, "model": {"vocab_size": 22}, "data": data, "train": {"batch_size": 2}}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": data}))
    trainer = [ev.name for ev in pipeline.evals]
    assert trainer == ["librispeech/units", "librilight/units"]
    assert list(runs.heldout_datasets(runs.run_units(run))) == trainer


@pytest.mark.parametrize("key", ["tokenizer", "eos_id"])
def test_manifest_without_a_field_is_one_clear_error(tmp_path, key):
    run, _ = _run(tmp_path)
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    del m[key]
    (tmp_path / "ds" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ZeroShotError) as e:
        runs.run_units(run)
    assert str(e.value) == (f"unit dataset manifest {tmp_path / 'ds' / 'manifest.json'} lacks "
                            f"{key!r}: not a dataset written by slmjax-units")


def test_test_set_without_tokens_is_refused_before_scoring(tmp_path):
    """An empty test split (or a training split too small to hold one out of) was found only by
    the test loss, after every benchmark was scored, and its error lost their scores."""
    ident = {"kind": "fake", "k": 20, "centroids_sha256": "0" * 8, "coarse": None}
    write_unit_dataset(str(tmp_path / "empty"), {"train": [np.array([1, 20])], "test": []},
                       vocab_size=22, tokenizer=ident)
    write_unit_dataset(str(tmp_path / "one"), {"train": [np.array([1, 20])]}, vocab_size=22,
                       tokenizer=ident)
    for test_set, why in (
            (HeldOutSet(str(tmp_path / "empty")), "split 'test' is empty: no test loss of it; "
             "name other --test_data, or --test_data= for none"),
            (HeldOutSet(str(tmp_path / "one"), holdout=0.1), "no 'test' split, and its 1 training "
             "utterance(s) cannot be split into a held-out set")):
        with pytest.raises(ZeroShotError) as e:
            runs.check_test_sets({"t": test_set}, ident)
        assert test_set.path in str(e.value) and str(e.value).endswith(why)
    runs.check_test_sets({"t": HeldOutSet(str(tmp_path / "empty"), "train")}, ident)


def test_scoring_context_is_known_before_any_checkpoint_is_read(tmp_path):
    """data.seq_len when the config has it, else the model's max_seq_len (configured, else the
    paper's 2050): scores.json's settings are checked against the context the scores will record
    (a missing seq_len once matched any recorded context, then replaced the record)."""
    (tmp_path / "config.json").write_text(json.dumps(
        {"data": {"seq_len": 32}, "model": {"max_seq_len": 64}}))
    assert runs.training_context(tmp_path) == 32
    (tmp_path / "config.json").write_text(json.dumps({"model": {"max_seq_len": 64}}))
    assert runs.training_context(tmp_path) == 64
    (tmp_path / "config.json").write_text(json.dumps({"data": {}}))
    assert runs.training_context(tmp_path) == 2050
