"""Reading and validating a unit dataset directory (`manifest.json` + ArrayRecord shards)."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os

import numpy as np

from slmjax.data.errors import DataError
from slmjax.data.splits import ArrayRecordSplit, shard_lengths

FORMAT_VERSION = 1
_REQUIRED = ("format_version", "tokenizer", "vocab_size", "eos_id", "pad_id", "dtype", "splits")


@dataclasses.dataclass
class UnitDataset:
  """An opened unit dataset: its manifest and its splits."""

  path: str
  name: str
  manifest: dict
  splits: dict  # split name -> ArrayRecordSplit

  @property
  def vocab_size(self) -> int:
    return int(self.manifest["vocab_size"])

  @property
  def eos_id(self) -> int:
    return int(self.manifest["eos_id"])

  @property
  def pad_id(self) -> int:
    return int(self.manifest["pad_id"])

  @property
  def synthetic(self) -> bool:
    return bool(self.manifest.get("synthetic", False))


def load_manifest(path: str) -> dict:
  """Reads and checks `manifest.json` of a unit dataset directory; DataError on any problem."""
  if not os.path.isdir(path):
    raise DataError(f"unit dataset not found: {path} is not a directory")
  mpath = os.path.join(path, "manifest.json")
  if not os.path.isfile(mpath):
    raise DataError(f"unit dataset {path}: no manifest.json (not a unit dataset directory?)")
  try:
    with open(mpath) as f:
      m = json.load(f)
  except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:  # binary junk: not UTF-8
    raise DataError(f"unit dataset {path}: manifest.json is not valid JSON ({e})") from None
  if not isinstance(m, dict):
    raise DataError(f"unit dataset {path}: manifest.json is not a JSON object")
  missing = [k for k in _REQUIRED if k not in m]
  if missing:
    raise DataError(f"unit dataset {path}: manifest.json lacks {', '.join(missing)}")
  if m["format_version"] != FORMAT_VERSION:
    raise DataError(f"unit dataset {path}: manifest format_version {m['format_version']!r} "
                    f"(this reader reads {FORMAT_VERSION})")
  for key in ("vocab_size", "eos_id", "pad_id"):
    if not _is_int(m[key]):
      raise DataError(f"unit dataset {path}: manifest {key} {m[key]!r} is not an integer")
  try:
    dtype = np.dtype(m["dtype"])
  except TypeError:
    raise DataError(f"unit dataset {path}: manifest dtype {m['dtype']!r} is not a NumPy dtype"
                    ) from None
  if dtype.kind not in "ui":
    raise DataError(f"unit dataset {path}: manifest dtype {m['dtype']!r} is not an integer type")
  v, eos, pad = int(m["vocab_size"]), int(m["eos_id"]), int(m["pad_id"])
  if not (0 <= eos < v and 0 <= pad < v and eos != pad):
    raise DataError(f"unit dataset {path}: eos_id {eos} / pad_id {pad} must be distinct ids "
                    f"below vocab_size {v}")
  if v > np.iinfo(dtype).max + 1:
    raise DataError(f"unit dataset {path}: vocab_size {v} does not fit dtype {dtype}")
  if not isinstance(m["splits"], dict):
    raise DataError(f"unit dataset {path}: manifest splits is not an object of split name -> shards")
  for split, info in m["splits"].items():
    if not isinstance(info, dict) or not info.get("shards"):
      raise DataError(f"unit dataset {path}: split {split!r} lists no shards")
    shards = info["shards"]
    if not isinstance(shards, list) or not all(isinstance(s, str) for s in shards):
      raise DataError(f"unit dataset {path}: split {split!r} shards {shards!r:.80} is not a list of "
                      "file names")
    for key in ("utterances", "tokens"):
      if key in info and not _is_int(info[key]):
        raise DataError(f"unit dataset {path}: split {split!r} {key} {info[key]!r} is not an integer")
  _check_shards_unique(path, m["splits"])
  return m


def _check_shards_unique(path: str, splits: dict) -> None:
  """A shard read twice would be trained twice per epoch, or tested on after training on it."""
  seen = {}
  for info in splits.values():
    for shard in info["shards"]:
      # the file itself: one shard may be spelled as a relative, an absolute or a linked path
      key = os.path.realpath(os.path.join(path, shard))
      if key in seen:
        twice = shard if seen[key] == shard else f"{seen[key]} (as {shard})"
        raise DataError(f"unit dataset {path}: shard {twice} is listed twice in manifest.json")
      seen[key] = shard


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def open_dataset(path: str, splits=("train", "test"), holdout: float = 0.01) -> UnitDataset:
  """Opens a unit dataset; checks every shard of the requested splits against the manifest.

  The first open scans each shard once (record lengths, ids, EOS, PAD) and caches the lengths.
  When the manifest has no split named `splits[1]` (the test split), a fixed `holdout` fraction
  of the training utterances (at least one, at most all but one; the same for every run) becomes
  the test split and is left out of training, as the paper does for corpora without an official
  held-out set.
  """
  path = os.path.abspath(os.path.expanduser(path.rstrip("/")))
  m = load_manifest(path)
  opened = {}
  train_split, test_split = splits[0], splits[1] if len(splits) > 1 else None
  if test_split == train_split:
    raise DataError(f"unit dataset {path}: the test split {test_split!r} is the training split; "
                    "name a held-out split (data.test_split)")
  for split in splits:
    if split in m["splits"]:
      opened[split] = _open_split(path, m, split)
    elif split != test_split:
      raise DataError(f"unit dataset {path}: manifest has no {split!r} split "
                      f"(has {', '.join(sorted(m['splits']))})")
  if test_split is not None and test_split not in opened:
    # a name like one of the manifest's held-out splits is a typo, not a wish to hold out
    near = difflib.get_close_matches(test_split, sorted(set(m["splits"]) - {train_split}),
                                     n=1, cutoff=0.6)
    if near:
      raise DataError(f"unit dataset {path}: no {test_split!r} split (data.test_split); did you "
                      f"mean {near[0]!r}? It has {', '.join(sorted(m['splits']))}")
    full = opened[train_split]
    n = full.n_records
    if n < 2 or not 0 < holdout < 1:
      raise DataError(f"unit dataset {path}: no {test_split!r} split, and its {n} training "
                      "utterance(s) cannot be split into a held-out set")
    # The records with the smallest keys of a fixed PCG64 stream: raw bit-generator output is
    # stable across NumPy releases, where Generator.choice's algorithm is not promised to be (a
    # change would move training utterances into the test set of a resumed or re-scored run).
    keys = np.random.PCG64(0x7e57).random_raw(n)
    n_test = min(n - 1, max(1, int(round(holdout * n))))  # both parts keep an utterance
    test_ids = np.sort(np.argsort(keys, kind="stable")[:n_test])
    train_ids = np.setdiff1d(np.arange(n), test_ids)
    args = (full.paths, m["dtype"], full.lengths, full.shard_records)
    opened[train_split] = ArrayRecordSplit(train_split, *args, subset=train_ids)
    opened[test_split] = ArrayRecordSplit(f"{test_split} (held out of {train_split})", *args,
                                          subset=test_ids)
  return UnitDataset(path=path, name=os.path.basename(path), manifest=m, splits=opened)


def _open_split(path: str, m: dict, split: str) -> ArrayRecordSplit:
  info = m["splits"][split]
  dtype = np.dtype(m["dtype"])
  shard_paths = [os.path.join(path, s) for s in info["shards"]]
  for p in shard_paths:
    if not os.path.isfile(p):
      raise DataError(f"unit dataset {path}: shard {os.path.relpath(p, path)} listed in "
                      "manifest.json is missing")
  try:
    lens = [shard_lengths(p, dtype, int(m["vocab_size"]), int(m["eos_id"]), int(m["pad_id"]))
            for p in shard_paths]
  except DataError as e:  # a mixture's datasets may share shard names
    raise DataError(f"unit dataset {path}: {e}") from None
  lengths = np.concatenate(lens) if lens else np.zeros(0, np.int64)
  n_utt, n_tok = int(lengths.size), int(lengths.sum())
  if "utterances" in info and int(info["utterances"]) != n_utt:
    raise DataError(f"unit dataset {path}: split {split!r} has {n_utt} records but the "
                    f"manifest says {info['utterances']} utterances (truncated shard?)")
  if "tokens" in info and int(info["tokens"]) != n_tok:
    raise DataError(f"unit dataset {path}: split {split!r} has {n_tok} tokens but the "
                    f"manifest says {info['tokens']} (truncated shard?)")
  bounds = np.concatenate([[0], np.cumsum([x.size for x in lens])]).astype(np.int64)
  return ArrayRecordSplit(split, shard_paths, m["dtype"], lengths, bounds)


def distinct_names(paths) -> list[str]:
  """One name per dataset path: its folder name, with as many parent folders as it takes to tell
  it from the others (``librispeech/units`` and ``librilight/units``, not two ``units``); a path
  given twice makes every name take its position as a prefix (``0_units``, ``1_units``). The
  trainer's metrics and slmjax-eval's test losses both name datasets this way."""
  given = [os.path.normpath(str(p)) for p in paths]
  parts = {p: tuple(p.split(os.sep)) for p in given}

  def name(p):
    for depth in range(1, len(parts[p]) + 1):
      suffix = parts[p][-depth:]
      if all(parts[q][-depth:] != suffix for q in parts if q != p):
        return "/".join(suffix)
    return p

  names = [name(p) for p in given]
  if len(set(names)) != len(names):
    names = [f"{i}_{n}" for i, n in enumerate(names)]
  return names
