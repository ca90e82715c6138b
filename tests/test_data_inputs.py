"""Synthetic n-gram stream (entropies checked against counts) and bad unit datasets."""

import json
import os

import ml_collections
import numpy as np
import pytest

from slmjax.data import DataError, build_pipeline, open_dataset
from slmjax.data.splits import shard_lengths
from slmjax.data.synthetic import NGramModel, synthetic_dataset
from slmjax.data.testing import random_utterances, write_unit_dataset


@pytest.mark.parametrize("k,support,order", [(12, 16, 1), (40, 4, 1), (6, 16, 2)])
def test_ngram_entropies_match_empirical_counts(k, support, order):
  """Exact entropies of the generator vs plug-in estimates from 400k sampled symbols."""
  m = NGramModel(n_units=k, order=order, support=support, concentration=0.3,
                 mean_utterance=20, seed=3)
  tokens, lengths = m.sample(400_000, stream=0)
  v = m.n_symbols
  uni = np.bincount(tokens, minlength=v) / tokens.size
  h_uni = -(uni[uni > 0] * np.log(uni[uni > 0])).sum()
  ctx = np.zeros(tokens.size - order, np.int64)
  for i in range(order):
    ctx = ctx * v + tokens[i:tokens.size - order + i]
  joint = np.bincount(ctx * v + tokens[order:], minlength=v ** (order + 1)).reshape(-1, v)
  cond = joint / np.maximum(joint.sum(1, keepdims=True), 1)
  h_cond = -(joint / joint.sum() * np.log(np.where(cond > 0, cond, 1))).sum()
  assert abs(h_uni - m.unigram_entropy()) < 0.015
  assert abs(h_cond - m.entropy_rate()) < 0.015
  assert m.entropy_rate() < m.unigram_entropy() - 0.5   # structure to learn
  # Utterances end with EOS, no empty ones, mean length near the requested one.
  ends = np.cumsum(lengths) - 1
  assert np.all(tokens[ends] == m.eos_id) and np.all(lengths >= 2)
  assert abs(lengths.mean() - 21) < 1.5


def test_synthetic_dataset_ids_and_determinism():
  a = synthetic_dataset(34, train_tokens=20_000, test_tokens=2_000, order=2, seed=7)
  b = synthetic_dataset(34, train_tokens=20_000, test_tokens=2_000, order=2, seed=7)
  np.testing.assert_array_equal(a.splits["train"].tokens, b.splits["train"].tokens)
  assert a.eos_id == 32 and a.pad_id == 33
  assert a.splits["train"].tokens.max() <= 32
  assert not np.array_equal(a.splits["train"].tokens[:2000], a.splits["test"].tokens[:2000])


@pytest.mark.parametrize("mean", [0.5, float("inf")])
def test_synthetic_mean_utterance_below_one_or_infinite_is_one_line(mean):
  # 1/mean is the EOS probability after a unit: 0.5 made it 2 and sampling stopped on a NumPy
  # "Probabilities contain NaN" traceback; inf never ends an utterance (no whole utterance to keep).
  cfg = ml_collections.ConfigDict(dict(
      seed=0, model=dict(vocab_size=20),
      data=dict(kind="synthetic", mode="windows", seq_len=8, weights=None,
                synthetic=dict(train_tokens=2000, test_tokens=500, mean_utterance=mean)),
      train=dict(batch_size=2)))
  with pytest.raises(DataError) as e:
    build_pipeline(cfg)
  assert _one_line(e).startswith(f"data.synthetic.mean_utterance={mean} must be")


def test_synthetic_mean_utterance_of_one_gives_one_unit_utterances():
  # The smallest valid mean: EOS after every unit (an empirical check, not the sampler's view).
  ds = synthetic_dataset(20, train_tokens=2000, test_tokens=500, mean_utterance=1.0)
  tokens = ds.splits["train"].tokens
  assert np.all(tokens[1::2] == ds.eos_id) and np.all(tokens[0::2] < ds.eos_id)


def _cfg(path, vocab=20):
  return ml_collections.ConfigDict(dict(
      seed=0, model=dict(vocab_size=vocab),
      data=dict(kind="units", path=path, mode="windows", seq_len=8, weights=None),
      train=dict(batch_size=2)))


@pytest.fixture()
def ds(tmp_path, monkeypatch):
  monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
  rng = np.random.default_rng(1)
  path = str(tmp_path / "ds")
  write_unit_dataset(path, {"train": random_utterances(60, 20, rng),
                            "test": random_utterances(6, 20, rng)}, vocab_size=20)
  return path


def _one_line(e):
  msg = str(e.value)
  assert "\n" not in msg
  return msg


def test_missing_dataset(tmp_path):
  with pytest.raises(DataError) as e:
    build_pipeline(_cfg(str(tmp_path / "nowhere")))
  assert "not found" in _one_line(e) and "nowhere" in str(e.value)


def test_wrong_vocab_for_model(ds):
  with pytest.raises(DataError) as e:
    build_pipeline(_cfg(ds, vocab=502))
  assert "vocab_size 20" in _one_line(e) and "config.model.vocab_size 502" in str(e.value)


def test_truncated_shard(ds):
  shard = os.path.join(ds, "train-00001-of-00002.array_record")
  size = os.path.getsize(shard)
  with open(shard, "r+b") as f:
    f.truncate(size // 2)
  with pytest.raises(DataError) as e:
    open_dataset(ds)
  assert "train-00001-of-00002" in _one_line(e) and "truncated" in str(e.value)


def test_manifest_counts_must_match_shards(ds):
  m = json.load(open(os.path.join(ds, "manifest.json")))
  m["splits"]["train"]["tokens"] += 5
  json.dump(m, open(os.path.join(ds, "manifest.json"), "w"))
  with pytest.raises(DataError) as e:
    open_dataset(ds)
  assert "tokens" in _one_line(e)


def test_missing_shard_and_bad_ids(ds, tmp_path):
  os.remove(os.path.join(ds, "test-00000-of-00002.array_record"))
  with pytest.raises(DataError) as e:
    open_dataset(ds)
  assert "test-00000-of-00002.array_record" in _one_line(e) and "missing" in str(e.value)
  bad = str(tmp_path / "bad")
  write_unit_dataset(bad, {"train": [np.array([3, 25, 18])], "test": [np.array([1, 18])]},
                     vocab_size=20)
  with pytest.raises(DataError) as e:
    open_dataset(bad)
  assert "unit id 25" in _one_line(e)
  negative = str(tmp_path / "negative")   # a signed dtype: ids below 0 are out of range too
  write_unit_dataset(negative, {"train": [np.array([3, -2, 18])], "test": [np.array([1, 18])]},
                     vocab_size=20, dtype="int16")
  with pytest.raises(DataError) as e:
    open_dataset(negative)
  assert "unit id -2 is negative" in _one_line(e)


@pytest.mark.parametrize("edit,message", [
    ({"vocab_size": 10, "eos_id": 7, "pad_id": 9},
     "record 0: unit id 18 >= vocab_size 10 stated by the manifest"),
    ({"eos_id": 17}, "record 0: last id 18 is not eos_id 17"),
    ({"pad_id": 3}, "record 0: pad_id 3 at position 0"),
    ({"dtype": "uint32"}, "record 0: empty or not a whole number of uint32 ids")])
def test_cached_lengths_do_not_skip_checks(tmp_path, monkeypatch, edit, message):
  """The record-length cache is keyed on what its checks depend on, not only the shard file."""
  monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
  path = str(tmp_path / "ds")
  m = write_unit_dataset(path, {"train": [np.array([3, 8, 18]), np.array([1, 18])]},
                         vocab_size=20, n_shards=1)
  assert open_dataset(path, splits=("train",)).splits["train"].lengths.tolist() == [3, 2]
  json.dump(dict(m, **edit), open(os.path.join(path, "manifest.json"), "w"))
  with pytest.raises(DataError) as e:
    open_dataset(path, splits=("train",))
  assert _one_line(e) == f"unit dataset {path}: shard train-00000-of-00001.array_record: {message}"


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(vocab_size="ten"), "manifest vocab_size 'ten' is not an integer"),
    (lambda m: m["splits"]["train"].update(shards="train-00000-of-00002.array_record"),
     "split 'train' shards 'train-00000-of-00002.array_record' is not a list of file names"),
    (lambda m: m["splits"]["test"].update(tokens="many"), "split 'test' tokens 'many' is not an integer"),
    (lambda m: m.update(splits=["train"]), "manifest splits is not an object of split name -> shards")])
def test_malformed_manifest_fields(ds, edit, message):
  mpath = os.path.join(ds, "manifest.json")
  m = json.load(open(mpath))
  edit(m)
  json.dump(m, open(mpath, "w"))
  with pytest.raises(DataError) as e:
    open_dataset(ds)
  assert _one_line(e) == f"unit dataset {ds}: {message}"


@pytest.mark.parametrize("content,message", [
    # a binary file (a corrupt copy) is not UTF-8: json.load raised UnicodeDecodeError
    (b"\xff\xfe\x00\x01binary", "manifest.json is not valid JSON ('utf-8' codec can't decode"),
    (b'{"format_version": "1"}', "manifest.json lacks tokenizer"),
])
def test_unreadable_manifest_is_one_line(ds, content, message):
  with open(os.path.join(ds, "manifest.json"), "wb") as f:
    f.write(content)
  with pytest.raises(DataError) as e:
    open_dataset(ds)
  assert _one_line(e).startswith(f"unit dataset {ds}: {message}")


def test_format_version_of_another_type_is_quoted(ds):
  # "1" (a string) is not version 1; the message said "format_version 1 (this reader reads 1)"
  mpath = os.path.join(ds, "manifest.json")
  m = json.load(open(mpath))
  m["format_version"] = "1"
  json.dump(m, open(mpath, "w"))
  with pytest.raises(DataError) as e:
    open_dataset(ds)
  assert _one_line(e) == f"unit dataset {ds}: manifest format_version '1' (this reader reads 1)"


def test_a_dataset_too_small_for_one_window_is_named(ds, tmp_path):
  # In a mixture, "split 'train'" alone does not say which dataset cannot fill a window.
  small = str(tmp_path / "small")
  write_unit_dataset(small, {"train": [np.array([1, 2, 18]), np.array([3, 18])],
                             "test": [np.array([1, 18])]}, vocab_size=20)
  cfg = _cfg(f"{ds},{small}")
  cfg.data.weights = "1,1"
  with pytest.raises(DataError) as e:
    build_pipeline(cfg)
  assert _one_line(e).startswith(f"unit dataset {small}: split 'train': 5 tokens do not fill")


@pytest.mark.parametrize("edit,shard", [
    (lambda m: m["splits"]["test"].update(shards=m["splits"]["train"]["shards"][:1]),
     "train-00000-of-00002.array_record"),
    (lambda m: m["splits"]["train"]["shards"].append("./train-00001-of-00002.array_record"),
     "train-00001-of-00002.array_record (as ./train-00001-of-00002.array_record)"),
    # the same file by an absolute path, or through the folder's parent: the test split would be
    # the training shard it names
    (lambda m, ds: m["splits"]["test"].update(shards=[os.path.join(ds, "train-00000-of-00002.array_record")]),
     "train-00000-of-00002.array_record (as {ds}/train-00000-of-00002.array_record)"),
    (lambda m, ds: m["splits"]["test"].update(
        shards=[f"../{os.path.basename(ds)}/train-00000-of-00002.array_record"]),
     "train-00000-of-00002.array_record (as ../{base}/train-00000-of-00002.array_record)")])
def test_a_shard_listed_twice_is_refused(ds, edit, shard):
  # A test split listing a training shard would score the model on what it trained on.
  mpath = os.path.join(ds, "manifest.json")
  m = json.load(open(mpath))
  for info in m["splits"].values():
    info.pop("utterances"), info.pop("tokens")
  edit(m) if edit.__code__.co_argcount == 1 else edit(m, ds)
  shard = shard.format(ds=ds, base=os.path.basename(ds))
  json.dump(m, open(mpath, "w"))
  with pytest.raises(DataError) as e:
    open_dataset(ds)
  assert _one_line(e) == f"unit dataset {ds}: shard {shard} is listed twice in manifest.json"


def test_test_split_cannot_be_the_training_split(ds):
  # data.test_split=train scored the model on the utterances it trained on.
  cfg = _cfg(ds)
  cfg.data.test_split = "train"
  with pytest.raises(DataError) as e:
    build_pipeline(cfg)
  assert _one_line(e) == (f"unit dataset {ds}: the test split 'train' is the training split; "
                          "name a held-out split (data.test_split)")


def test_a_misspelt_test_split_is_refused_not_held_out_of_training(ds):
  # data.test_split=tset held 1% of train out as the test set, beside the real 'test' split.
  cfg = _cfg(ds)
  cfg.data.test_split = "tset"
  with pytest.raises(DataError) as e:
    build_pipeline(cfg)
  assert _one_line(e) == (f"unit dataset {ds}: no 'tset' split (data.test_split); did you mean "
                          "'test'? It has test, train")
  # a name unlike any of its splits still holds a part of training out, as documented
  splits = open_dataset(ds, splits=("train", "validation")).splits
  assert splits["validation"].n_records == 1 and splits["train"].n_records == 59


@pytest.mark.parametrize("bad_record,message", [
    (np.array([4, 19, 7, 18]), "record 2: pad_id 19 at position 1"),
    (np.array([4, 18, 7, 18]), "record 2: eos_id 18 at position 1, not at its end"),
    (np.array([4, 7, 5]), "record 2: last id 5 is not eos_id 18")])
def test_special_ids_inside_a_record_are_refused(tmp_path, monkeypatch, bad_record, message):
  # PAD in the data, or EOS inside an utterance, would train padding or a false boundary.
  monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
  path = str(tmp_path / "ds")
  train = [np.array([1, 18]), np.array([2, 3, 18]), bad_record, np.array([5, 18])]
  write_unit_dataset(path, {"train": train, "test": [np.array([1, 18])]}, vocab_size=20,
                     n_shards=1)
  with pytest.raises(DataError) as e:
    open_dataset(path)
  assert _one_line(e) == (f"unit dataset {path}: shard train-00000-of-00001.array_record: "
                          f"{message}")
  with pytest.raises(DataError, match=f"^shard train-00000-of-00001.array_record: {message}$"):
    shard_lengths(os.path.join(path, "train-00000-of-00001.array_record"), np.dtype("uint16"),
                  20, 18, 19, batch=2)   # record 2 is the first of the second read


def test_a_mixture_of_datasets_with_other_eos_and_pad_ids_is_refused(ds, tmp_path):
  # The same tokenizer, but EOS and PAD swapped: one dataset's boundaries would be the other's
  # padding, and slmjax-eval scores with the first dataset's EOS.
  other = str(tmp_path / "other")
  m = write_unit_dataset(other, {"train": [np.array([1, 2, 19])] * 40,
                                 "test": [np.array([1, 19])]}, vocab_size=20)
  json.dump(dict(m, eos_id=19, pad_id=18), open(os.path.join(other, "manifest.json"), "w"))
  cfg = _cfg(f"{ds},{other}")
  cfg.data.weights = "1,1"
  with pytest.raises(DataError) as e:
    build_pipeline(cfg)
  assert _one_line(e) == (f"unit datasets {ds} and {other} use different eos_id/pad_id (18/19 "
                          "and 19/18): their units do not mix")


def test_a_large_holdout_leaves_one_training_utterance(tmp_path, monkeypatch):
  # round(0.9 * 3) = 3 held out every utterance; training then failed as "0 tokens".
  monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
  path = str(tmp_path / "ds")
  write_unit_dataset(path, {"train": [np.array([1, 2, 18])] * 3}, vocab_size=20)
  splits = open_dataset(path, holdout=0.9).splits
  assert splits["train"].n_records == 1 and splits["test"].n_records == 2
