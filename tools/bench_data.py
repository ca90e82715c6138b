"""Tokens/s the Grain input pipeline delivers from ArrayRecord unit shards (windows and packed).

    python tools/bench_data.py [--tokens=20000000 --seq_len=2050 --batch=64 --seconds=10]

Writes a unit dataset of random utterances (or reads --dataset), then times the training iterator
(Grain over ArrayRecord, bulk record reads, NumPy assembly) in both modes. Baselines measured in
the same run: bulk-reading the same shards in one thread with no assembly, and reading records
one by one through grain.sources.ArrayRecordDataSource (what a per-record Grain pipeline pays). Prints a table; the last line is one JSON
object with `tokens_per_sec` (the slower of the two modes).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from absl import app, flags
import ml_collections
import numpy as np

import benchcli  # tools/, beside this script
from slmjax import cli_help

_TOKENS = flags.DEFINE_integer("tokens", 20_000_000, "Tokens of the generated dataset.",
                               lower_bound=1)
# Lengths are drawn from [m // 4, 2m - m // 4): m >= 4 keeps every utterance non-empty.
_MEAN_UTT = flags.DEFINE_integer("mean_utterance", 190, "Mean utterance length (units).",
                                 lower_bound=4)
_SHARDS = flags.DEFINE_integer("shards", 8, "Shards of the generated dataset.", lower_bound=1)
_DATASET = cli_help.DEFINE_path("dataset", None, "Read this unit dataset instead of generating.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 2050, "Tokens per example (the paper: 2050).",
                                lower_bound=1)
_BATCH = flags.DEFINE_integer("batch", 64, "Global batch (the paper's 20M model: 64).",
                              lower_bound=1)
_SECONDS = flags.DEFINE_float("seconds", 8.0, "Time each measurement for about this long.")
benchcli.positive("seconds")
_THREADS = flags.DEFINE_integer("num_threads", 2, "Grain read threads.", lower_bound=1)
_MODES = flags.DEFINE_list("modes", ["windows", "packed"], "Modes to time.")
benchcli.choices("modes", ("windows", "packed"), required=True)


def _write_dataset(path: str, tokens: int, mean_len: int, shards: int) -> None:
  from slmjax.data.testing import write_unit_dataset  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  n = max(2, tokens // mean_len)
  lens = rng.integers(mean_len // 4, 2 * mean_len - mean_len // 4, size=n)
  flat = rng.integers(0, 500, size=int(lens.sum()), dtype=np.uint16)
  ends = np.cumsum(lens)
  flat[ends - 1] = 500
  utts = np.split(flat, ends[:-1])
  write_unit_dataset(path, {"train": utts, "test": utts[:100]}, vocab_size=502,
                     n_shards=shards)


def _time(fn, seconds: float) -> tuple[float, int]:
  """(elapsed, tokens) of calling fn() (returns tokens) repeatedly for ~seconds."""
  fn()  # warm-up
  t0, n = time.perf_counter(), 0
  while time.perf_counter() - t0 < seconds:
    n += fn()
  return time.perf_counter() - t0, n


def main(argv):
  del argv
  from slmjax.data import build_pipeline, open_dataset  # pylint: disable=g-import-not-at-top
  tmp = None
  path = _DATASET.value
  if not path:
    tmp = tempfile.TemporaryDirectory()
    path = os.path.join(tmp.name, "units")
    t0 = time.perf_counter()
    _write_dataset(path, _TOKENS.value, _MEAN_UTT.value, _SHARDS.value)
    print(f"wrote {_TOKENS.value:,} tokens in {time.perf_counter() - t0:.1f} s")
    os.environ["SLMJAX_CACHE"] = os.path.join(tmp.name, "cache")
  t0 = time.perf_counter()
  ds = open_dataset(path)
  split = ds.splits["train"]
  scan = time.perf_counter() - t0
  t0 = time.perf_counter()
  open_dataset(path)
  cached = time.perf_counter() - t0
  rows = [("open + scan record lengths (first open)", split.n_tokens / scan, scan),
          ("open (lengths cached)", float("nan"), cached)]

  # Baselines on the same shards.
  chunk = 4096
  order = np.random.default_rng(1).permutation(split.n_records)
  pos = [0]

  def bulk():
    lo = pos[0] % max(1, split.n_records - chunk)
    pos[0] += chunk
    return int(split.read_records(np.arange(lo, min(split.n_records, lo + chunk))).size)

  import grain  # pylint: disable=g-import-not-at-top
  source = grain.sources.ArrayRecordDataSource(split.paths)

  def one_by_one():  # what grain.MapDataset.source(ArrayRecordDataSource) does per element
    n = 0
    for r in order[pos[0] % split.n_records:][:512]:
      n += np.frombuffer(source[int(r)], np.uint16).size
    pos[0] += 512
    return n

  el, n = _time(bulk, _SECONDS.value / 2)
  rows.append(("bulk record reads, 1 thread, no assembly", n / el, el))
  el, n = _time(one_by_one, _SECONDS.value / 2)
  rows.append(("records one by one (per-record baseline)", n / el, el))
  ceiling, per_record = rows[2][1], rows[3][1]

  results = {}
  for mode in _MODES.value:
    cfg = ml_collections.ConfigDict(dict(
        seed=0, model=dict(vocab_size=ds.vocab_size),
        data=dict(kind="units", path=path, mode=mode, seq_len=_SEQ_LEN.value, weights="",
                  num_threads=_THREADS.value, prefetch=8),
        train=dict(batch_size=_BATCH.value)))
    it = build_pipeline(cfg).train_iter()
    bt = _BATCH.value * _SEQ_LEN.value  # token slots per batch (packed rows include padding)
    el, n = _time(lambda: (next(it), bt)[1], _SECONDS.value)
    results[mode] = n / el
    rows.append((f"pipeline `{mode}` (B={_BATCH.value}, T={_SEQ_LEN.value})", n / el, el))

  print(f"\n{'what':<52} {'tokens/s':>14} {'seconds':>8}")
  for name, tps, el in rows:
    print(f"{name:<52} {tps:>14,.0f} {el:>8.2f}")
  worst = min(results.values())
  print(f"\nslowest mode / 1-thread bulk reads: {worst / ceiling:.2f}; "
        f"/ per-record reads: {worst / per_record:.1f}x; cpus={os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f} (shared machine when > cpus)")
  print(json.dumps({"tokens_per_sec": worst, "by_mode": results, "bulk_read_1thread": ceiling,
                    "per_record_baseline": per_record, "dataset_tokens": split.n_tokens,
                    "seq_len": _SEQ_LEN.value, "batch": _BATCH.value,
                    "num_threads": _THREADS.value, "cpus": os.cpu_count(),
                    "load_average": os.getloadavg()[0]}))
  if tmp is not None:
    tmp.cleanup()


if __name__ == "__main__":
  app.run(main, flags_parser=benchcli.parse_flags)
