"""Writing small unit datasets exactly as docs/interfaces.md specifies (tests, benchmarks, demos)."""

from __future__ import annotations

import os

import numpy as np

from slmjax import fileio


def write_unit_dataset(path: str, splits: dict, *, vocab_size: int, n_shards: int = 2,
                       dtype: str = "uint16", synthetic: bool = False,
                       tokenizer: dict | None = None) -> dict:
  """Writes `splits` ({name: list of int arrays, each ending with EOS}) as a unit dataset.

  Returns the manifest. Shards are ArrayRecord files written with `group_size:1`.
  """
  from array_record.python.array_record_module import ArrayRecordWriter  # pylint: disable=g-import-not-at-top
  os.makedirs(path, exist_ok=True)
  manifest = {
      "format_version": 1,
      "tokenizer": tokenizer or {"kind": "test", "k": vocab_size - 2, "centroids_sha256": "0",
                                 "coarse": None},
      "vocab_size": vocab_size, "eos_id": vocab_size - 2, "pad_id": vocab_size - 1,
      "dtype": dtype, "frame_rate": 100.0, "splits": {}, "skipped": 0, "synthetic": synthetic}
  for name, utts in splits.items():
    n = min(n_shards, max(1, len(utts)))
    bounds = np.linspace(0, len(utts), n + 1).astype(int)
    shards = []
    for i in range(n):
      fname = f"{name}-{i:05d}-of-{n:05d}.array_record"
      w = ArrayRecordWriter(os.path.join(path, fname), "group_size:1")
      for u in utts[bounds[i]:bounds[i + 1]]:
        w.write(np.asarray(u, dtype=dtype).astype(np.dtype(dtype).newbyteorder("<")).tobytes())
      w.close()
      shards.append(fname)
    manifest["splits"][name] = {"shards": shards, "utterances": len(utts),
                                "tokens": int(sum(len(u) for u in utts)),
                                "seconds": float(sum(len(u) for u in utts)) / 100.0}
  fileio.atomic_write_json(os.path.join(path, "manifest.json"), manifest, indent=1)
  return manifest


def random_utterances(n: int, vocab_size: int, rng: np.random.Generator, mean_len: int = 30
                      ) -> list:
  """n random utterances of unit ids 0..K-1 followed by EOS (K = vocab_size - 2)."""
  k = vocab_size - 2
  lens = rng.integers(1, 2 * mean_len, size=n)
  return [np.append(rng.integers(0, k, size=L), k) for L in lens]
