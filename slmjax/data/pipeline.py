"""The training input pipeline: datasets -> example streams -> mixed global batches -> Grain.

Global batch t is a pure function of (seed, t): dataset d fills a fixed share `counts[d]` of the
batch's rows with examples t*counts[d] ... of its own stream, datasets in config order. Process p
of P reads only rows [p*B/P, (p+1)*B/P) of it, so the global batch does not depend on the number
of processes or devices, and the Grain iterator state (the next batch index) restores exactly.
With data.max_unique_tokens = U > 0, each dataset's stream is cut to the first U_d tokens of
its training split (U split as the batch rows are; in packed mode, as the utterance tokens the
rows hold): every epoch then repeats those tokens only, and every dataset runs the same epochs.
"""

from __future__ import annotations

import dataclasses
import sys

import grain
import numpy as np

from slmjax.data.errors import DataError
from slmjax.data.examples import PACKED_ROWS, check_mode, make_eval_stream, make_stream
from slmjax.data.manifest import distinct_names, open_dataset
from slmjax.data.splits import PrefixSplit
from slmjax.data.synthetic import synthetic_dataset


def _opt(cfg, name, default):
  return cfg.get(name, default) if hasattr(cfg, "get") else getattr(cfg, name, default)


def open_datasets(config) -> list:
  """The datasets named by config.data (kind 'synthetic', or 'units' with comma-joined paths)."""
  d = config.data
  kind = _opt(d, "kind", "synthetic")
  vocab = int(config.model.vocab_size)
  if kind == "synthetic":
    s = _opt(d, "synthetic", None) or {}
    get = (lambda k, v: _opt(s, k, v))
    return [synthetic_dataset(
        vocab, train_tokens=int(get("train_tokens", 1_000_000)),
        test_tokens=int(get("test_tokens", 50_000)), order=int(get("order", 1)),
        support=int(get("support", 16)), concentration=float(get("concentration", 0.5)),
        mean_utterance=float(get("mean_utterance", 50.0)), seed=int(config.seed))]
  if kind != "units":
    raise DataError(f"data.kind must be 'synthetic' or 'units', got {kind!r}")
  paths = [p.strip() for p in str(_opt(d, "path", "") or "").split(",") if p.strip()]
  if not paths:
    raise DataError("data.kind='units' needs data.path (a unit dataset directory, or several "
                    "joined by ',')")
  split = str(_opt(d, "test_split", "test"))
  holdout = float(_opt(d, "holdout", 0.01))
  datasets = [open_dataset(p, splits=("train", split), holdout=holdout) for p in paths]
  for ds in datasets:
    ds.splits["test"] = ds.splits[split]
    if ds.vocab_size != vocab:
      raise DataError(f"unit dataset {ds.path}: manifest vocab_size {ds.vocab_size} does not "
                      f"match config.model.vocab_size {vocab}")
    first = datasets[0]
    if ds.manifest.get("tokenizer") != first.manifest.get("tokenizer"):
      raise DataError(f"unit datasets {first.path} and {ds.path} use different "
                      "tokenizers (manifest 'tokenizer' differs): their units do not mix")
    if (ds.eos_id, ds.pad_id) != (first.eos_id, first.pad_id):
      raise DataError(f"unit datasets {first.path} and {ds.path} use different eos_id/pad_id "
                      f"({first.eos_id}/{first.pad_id} and {ds.eos_id}/{ds.pad_id}): their units "
                      "do not mix")
  for ds, name in zip(datasets, distinct_names([ds.path for ds in datasets])):
    ds.name = name
  return datasets


def mixture_line(info: dict) -> str | None:
  """How a mixture's weights became rows of each batch, in one line, from DataPipeline.info()
  (None for one dataset), e.g. "data mixture, rows of each 4-row batch: a 3 (weight 0.700), b 1
  (weight 0.300)"."""
  rows = info["datasets"]
  if len(rows) < 2:
    return None
  parts = ", ".join(f"{r['name']} {r['rows_per_batch']} (weight {r['weight']:.3f})" for r in rows)
  return f"data mixture, rows of each {sum(r['rows_per_batch'] for r in rows)}-row batch: {parts}"


def mixture_counts(weights, batch_size: int, names) -> np.ndarray:
  """Rows of each global batch given to each dataset: largest-remainder rounding of B*w."""
  w = np.asarray(weights, np.float64)
  if w.size != len(names) or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
    raise DataError(f"data.weights {list(weights)} must be {len(names)} non-negative numbers "
                    "(one per dataset in data.path)")
  x = batch_size * w / w.sum()
  c = np.floor(x).astype(np.int64)
  c[np.argsort(-(x - c), kind="stable")[:batch_size - int(c.sum())]] += 1
  for n, wi, ci in zip(names, w, c):
    if wi > 0 and ci == 0:
      raise DataError(f"dataset {n}: weight {wi:g} gives it no row of a {batch_size}-sequence "
                      "batch; raise its weight or the batch size")
  return c


def unique_shares(max_unique: int, counts, splits, names, seq_len: int) -> np.ndarray:
  """Tokens of each dataset's training stream kept by data.max_unique_tokens = U > 0.

  Dataset d keeps the first U_d tokens of its stream, U_d the largest-remainder rounding of
  U * c_d / sum(c), c_d its share of each batch: its rows (data.weights rounded to rows), or in
  packed mode its rows times the utterance tokens a row of it holds, so the U_d sum to U and
  every dataset runs the same number of epochs.
  """
  w = np.asarray(counts, np.float64)
  total = sum(s.n_tokens for s in splits)
  if max_unique > total:
    raise DataError(f"data.max_unique_tokens={max_unique} exceeds the {total} training tokens "
                    "of the data")
  x = max_unique * w / w.sum()
  u = np.floor(x).astype(np.int64)
  u[np.argsort(-(x - u), kind="stable")[:max_unique - int(u.sum())]] += 1
  for n, wi, ui, s in zip(names, w, u, splits):
    if ui > s.n_tokens:
      raise DataError(f"data.max_unique_tokens={max_unique}: dataset {n}'s share by its weight "
                      f"({ui} tokens) exceeds its {s.n_tokens} training tokens")
    if wi > 0 and ui < seq_len + 1:
      raise DataError(f"data.max_unique_tokens={max_unique}: dataset {n}'s share by its weight "
                      f"({ui} tokens) is less than one window of seq_len+1 = {seq_len + 1}")
  return u


class TrainBatches(grain.MapDataset):
  """Grain MapDataset whose element t is this process's rows of global batch t."""

  def __init__(self, streams, counts, process_index: int = 0, process_count: int = 1):
    super().__init__()
    self.streams, self.counts = list(streams), np.asarray(counts, np.int64)
    b = int(self.counts.sum())
    if b % process_count:
      raise DataError(f"global batch {b} is not divisible by {process_count} processes")
    self.local = b // process_count
    self.lo = process_index * self.local
    self.offsets = np.concatenate([[0], np.cumsum(self.counts)])

  def __len__(self):
    return sys.maxsize

  def __str__(self):
    return f"TrainBatches(rows={self.local}, datasets={len(self.streams)})"

  def __getitem__(self, t):
    if isinstance(t, slice):
      return self.slice(t)
    parts = []
    for d, stream in enumerate(self.streams):
      lo = max(self.lo, self.offsets[d])
      hi = min(self.lo + self.local, self.offsets[d + 1])
      if hi > lo:
        k = np.arange(lo - self.offsets[d], hi - self.offsets[d])
        parts.append(stream.get(int(t) * int(self.counts[d]) + k))
    if len(parts) == 1:
      return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclasses.dataclass
class EvalSet:
  """The held-out examples of one dataset, batched for evaluation (fixed order, padded)."""

  name: str
  synthetic: bool
  stream: object
  n_examples: int

  def batches(self, batch_size: int, process_index: int = 0, process_count: int = 1,
              max_batches: int = 0):
    """Yields this process's rows of each global eval batch; padding rows have weight 0.

    `max_batches` > 0 reads that many batches of examples spread evenly over the whole split (in
    order, the same ones every time) rather than its first ones, which lie in its first shards.
    """
    picked = np.arange(self.n_examples)
    if 0 < max_batches * batch_size < self.n_examples:
      picked = np.linspace(0, self.n_examples - 1, max_batches * batch_size).round().astype(np.int64)
    local = batch_size // process_count
    for b0 in range(0, picked.size, batch_size):
      pos = b0 + process_index * local + np.arange(local)
      valid = pos < picked.size
      ex = self.stream.get(picked[np.where(valid, pos, 0)])
      w = ex.pop("weights", np.ones(ex["inputs"].shape, np.float32))
      ex["weights"] = (w * valid[:, None]).astype(np.float32)
      yield ex


@dataclasses.dataclass
class DataPipeline:
  """Everything the loop needs from the data stage."""

  datasets: list
  counts: np.ndarray  # rows of each global batch per dataset: `weights` rounded to rows
  train: TrainBatches
  evals: list
  seq_len: int
  mode: str
  num_threads: int
  prefetch: int
  weights: np.ndarray  # data.weights (or the default, by tokens), normalised to sum 1

  def train_iter(self):
    """A fresh Grain iterator over training batches (get_state/set_state checkpoint it)."""
    opts = grain.ReadOptions(num_threads=self.num_threads, prefetch_buffer_size=self.prefetch)
    return iter(self.train.to_iter_dataset(opts))

  @property
  def unique_tokens(self) -> int:
    """Distinct training tokens the run may see: the streams' splits of the datasets given
    rows (data.max_unique_tokens when set)."""
    return int(sum(s.split.n_tokens for s, c in zip(self.train.streams, self.counts) if c > 0))

  def epochs(self, steps: int) -> dict:
    """Passes over each dataset's training data after `steps` updates: its tokens trained on over
    an epoch's (windows: whole windows of an epoch; packed: the split's utterance tokens, whose
    rows per epoch vary with the packing order, so rows over epoch 0's rows would not count it)."""
    return {ds.name: float(s.tokens_in(steps * int(c)) / (s.examples_per_epoch * s.tokens_per_example))
            for ds, c, s in zip(self.datasets, self.counts, self.train.streams)}

  def trained_tokens(self, steps: int) -> int:
    """Data tokens the first `steps` updates train on, counted exactly: targets of weight 1 (a
    packed row's padding excluded; every slot of a window), over every dataset of the mixture.
    Equals steps * batch_size * seq_len in windows mode."""
    return sum(s.tokens_in(steps * int(c)) for c, s in zip(self.counts, self.train.streams) if c > 0)

  def total_epochs(self, steps: int) -> float:
    """Passes over the unique tokens after `steps` updates: the data tokens trained on (packed
    rows' padding excluded, counted exactly as `trained_tokens`) over `unique_tokens`."""
    return float(self.trained_tokens(steps) / self.unique_tokens)

  def info(self) -> dict:
    out = {"mode": self.mode, "seq_len": self.seq_len, "datasets": []}
    if self.mode == "packed":
      out["packed_rows"] = PACKED_ROWS
    for ds, c, s, w in zip(self.datasets, self.counts, self.train.streams, self.weights):
      row = {"name": ds.name, "synthetic": bool(ds.synthetic), "rows_per_batch": int(c),
             "weight": float(w),
             "train_tokens": ds.splits["train"].n_tokens, "unique_tokens": s.split.n_tokens,
             "test_tokens": ds.splits["test"].n_tokens}
      if hasattr(ds, "info"):
        row.update({k: v for k, v in ds.info.items() if k in ("entropy_rate", "unigram_entropy",
                                                               "order")})
      else:
        row["path"] = ds.path
      out["datasets"].append(row)
    return out


def _about(ds, make, *args):
  """make(*args); a DataError it raises names the dataset (a mixture has several)."""
  try:
    return make(*args)
  except DataError as e:
    where = f"unit dataset {ds.path}" if hasattr(ds, "path") else f"dataset {ds.name}"
    raise DataError(f"{where}: {e}") from None


def build_pipeline(config, process_index: int = 0, process_count: int = 1) -> DataPipeline:
  """Opens the datasets of config.data and builds the training and held-out pipelines."""
  d = config.data
  mode = str(_opt(d, "mode", "windows"))
  check_mode(mode)
  datasets = open_datasets(config)
  seq_len = int(d.seq_len)
  seed = int(config.seed)
  names = [ds.name for ds in datasets]
  weights = _opt(d, "weights", None)
  if weights in (None, "", ()):
    weights = [ds.splits["train"].n_tokens for ds in datasets]
  elif isinstance(weights, str):
    try:
      weights = [float(x) for x in weights.split(",")]
    except ValueError:
      raise DataError(f"data.weights {weights!r} is not a comma-separated list of numbers"
                      ) from None
  counts = mixture_counts(weights, int(config.train.batch_size), names)
  train = [ds.splits["train"] for ds in datasets]
  max_unique = int(_opt(d, "max_unique_tokens", 0) or 0)
  if max_unique < 0:
    raise DataError(f"data.max_unique_tokens={max_unique} must be >= 0 (0 = all)")

  def make_streams(splits):
    return [_about(ds, make_stream, s, mode, seq_len, seed * 1000 + i, ds.pad_id, ds.eos_id)
            for i, (ds, s) in enumerate(zip(datasets, splits))]

  if max_unique:
    share_of_batch = counts
    if mode == "packed" and np.count_nonzero(counts) > 1:
      # A packed row holds fewer tokens of a dataset whose utterances leave more padding: U
      # shared by rows alone ran such a dataset more epochs than the others. Shared by the
      # utterance tokens each dataset's rows carry per batch (measured on a prefix of its rows'
      # share of U), every dataset runs the same number of epochs.
      guess = [PrefixSplit(s, min(s.n_tokens, max(1, max_unique * int(c) // int(counts.sum()))))
               for s, c in zip(train, counts)]
      share_of_batch = counts * np.array([s.tokens_per_example for s in make_streams(guess)])
    shares = unique_shares(max_unique, share_of_batch, train, names, seq_len)
    train = [PrefixSplit(s, u) if u > 0 else s for s, u in zip(train, shares)]
  streams = make_streams(train)
  evals = []
  for ds in datasets:
    s = _about(ds, make_eval_stream, ds.splits["test"], mode, seq_len, ds.pad_id, ds.eos_id)
    evals.append(EvalSet(ds.name, bool(ds.synthetic), s, s.examples_per_epoch))
  return DataPipeline(
      datasets=datasets, counts=counts,
      train=TrainBatches(streams, counts, process_index, process_count), evals=evals,
      seq_len=seq_len, mode=mode, num_threads=int(_opt(d, "num_threads", 1)),
      prefetch=int(_opt(d, "prefetch", 4)),
      weights=np.asarray(weights, np.float64) / np.sum(weights, dtype=np.float64))
