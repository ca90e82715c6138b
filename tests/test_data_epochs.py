"""The run's epochs figure: data tokens trained on over unique tokens, padding excluded."""

import ml_collections
import numpy as np
import pytest

from slmjax.data import build_pipeline
from slmjax.data.testing import write_unit_dataset

V, T, B = 20, 8, 4


def _pipeline(tmp_path, monkeypatch, mode):
  monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
  # Six utterances of 5 tokens and six of 6: no two fit one row of 8, so every packed row
  # holds one utterance and 2 or 3 padding slots, whatever the order.
  train = [np.append(np.arange(n - 1) + 1, V - 2) for n in [5, 6] * 6]
  path = str(tmp_path / "ds")
  write_unit_dataset(path, {"train": train, "test": train[:2]}, vocab_size=V, n_shards=1)
  return build_pipeline(ml_collections.ConfigDict(dict(
      seed=0, model=dict(vocab_size=V),
      data=dict(kind="units", path=path, mode=mode, seq_len=T, weights=None),
      train=dict(batch_size=B))))


def test_packed_epochs_count_utterance_tokens_not_padding(tmp_path, monkeypatch):
  pipe = _pipeline(tmp_path, monkeypatch, "packed")
  assert pipe.unique_tokens == 66 and pipe.train.streams[0].examples_per_epoch == 12
  # 6 steps of 4 rows: 24 rows, each of the 12 utterances twice, 132 of the 192 slots data.
  # Slots over unique tokens (192 / 66 = 2.9) counted the padding as data.
  assert pipe.total_epochs(6) == pytest.approx(2.0)
  assert pipe.epochs(6) == {"ds": pytest.approx(2.0)}


def test_windows_epochs_are_trained_tokens_over_unique_tokens(tmp_path, monkeypatch):
  pipe = _pipeline(tmp_path, monkeypatch, "windows")
  assert pipe.total_epochs(6) == pytest.approx(6 * B * T / 66)   # windows hold no padding


def test_trained_tokens_counts_the_weighted_targets_exactly(tmp_path, monkeypatch):
  """run.json's trained_tokens (the sweep's D of a packed run): the weights of the rows the
  updates read, padding excluded, also within a partial epoch; every slot in windows mode."""
  pipe = _pipeline(tmp_path, monkeypatch, "packed")
  it, counted = pipe.train_iter(), []
  for _ in range(7):                     # 28 rows: two epochs of 12 and 4 rows of the third
    counted.append(float(next(it)["weights"].sum()))
  for steps in range(8):
    assert pipe.trained_tokens(steps) == sum(counted[:steps])
  assert pipe.trained_tokens(6) == 132 and pipe.trained_tokens(6) < 6 * B * T
  assert _pipeline(tmp_path / "w", monkeypatch, "windows").trained_tokens(6) == 6 * B * T


def test_packed_epochs_follow_the_rows_each_epoch_packs(tmp_path, monkeypatch):
  """Utterances of 1-9 tokens: rows per epoch vary with the packing order, and epochs read as
  rows over epoch 0's rows (or epoch 0's mean tokens per row) missed the passes the batches make.
  They are the weights the batches hold, counted here from the batches, over the split's tokens."""
  monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
  rng = np.random.default_rng(3)
  train = [np.append(rng.integers(1, V - 2, int(n) - 1), V - 2) for n in rng.integers(1, 10, 30)]
  path = str(tmp_path / "ds")
  write_unit_dataset(path, {"train": train, "test": train[:2]}, vocab_size=V, n_shards=2)
  pipe = build_pipeline(ml_collections.ConfigDict(dict(
      seed=0, model=dict(vocab_size=V), data=dict(kind="units", path=path, mode="packed", seq_len=T,
                                                  weights=None), train=dict(batch_size=B))))
  stream = pipe.train.streams[0]
  assert len({stream._epoch_rows(e) for e in range(6)}) > 1   # the case: rows differ by epoch
  it, fed = pipe.train_iter(), 0.0
  unique = sum(len(u) for u in train)
  for steps in range(1, 41):
    fed += float(next(it)["weights"].sum())
    assert pipe.total_epochs(steps) == pytest.approx(fed / unique, rel=1e-12)
    assert pipe.epochs(steps) == {"ds": pytest.approx(fed / unique, rel=1e-12)}
