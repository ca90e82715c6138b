"""Test loss: mean NLL per unit of a model on a held-out unit dataset (``slmjax.units`` layout)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from slmjax.analysis.zeroshot.errors import ZeroShotError


def read_split(dataset_dir, split: str = "test") -> tuple[list, dict]:
    """Records of one split as int32 arrays (each ends with EOS), and the manifest."""
    from array_record.python.array_record_module import ArrayRecordReader
    dataset_dir = Path(dataset_dir)
    manifest_path = dataset_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ZeroShotError(f"{dataset_dir} is not a unit dataset (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    if split not in manifest.get("splits", {}):
        raise ZeroShotError(f"{dataset_dir} has no {split!r} split "
                            f"(splits: {sorted(manifest.get('splits', {}))})")
    dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
    records = []
    for shard in manifest["splits"][split]["shards"]:
        reader = ArrayRecordReader(str(dataset_dir / shard))
        try:
            records.extend(np.frombuffer(r, dtype=dtype).astype(np.int32) for r in reader.read_all())
        finally:
            reader.close()
    return records, manifest


def stream_windows(records, window: int) -> list:
    """The split as one stream (records already end with EOS) cut into windows of ``window + 1``
    tokens that overlap by one, so that every token but the first is predicted exactly once."""
    stream = np.concatenate(records) if records else np.zeros(0, np.int32)
    return [stream[s:s + window + 1] for s in range(0, max(len(stream) - 1, 0), window)
            if len(stream[s:s + window + 1]) >= 2]


def heldout_loss(scorer, dataset_dir, split: str = "test", window: int | None = None) -> dict:
    """``{"nll_per_unit", "n_tokens", "n_utterances"}``: mean NLL over every predicted token of the
    split's stream, scored in windows of the model context (as training sees the data)."""
    records, manifest = read_split(dataset_dir, split)
    windows = stream_windows(records, window or scorer.max_len)
    if not windows:
        raise ZeroShotError(f"{dataset_dir} split {split!r} is empty")
    stats = scorer.score(windows, desc=f"test loss {Path(dataset_dir).name}")
    total = float(np.sum(stats.body_logprob + stats.last_logprob))
    n = int(np.sum(stats.n_targets))
    return {"nll_per_unit": -total / n, "n_tokens": n, "n_utterances": len(records),
            "synthetic": bool(manifest.get("synthetic", False))}
