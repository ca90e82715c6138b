"""Test loss: mean NLL per unit of a model on a held-out unit dataset (``slmjax.units`` layout)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from slmjax.analysis.zeroshot.errors import ZeroShotError


@dataclasses.dataclass(frozen=True)
class HeldOutSet:
    """A split to take the test loss on: ``split`` of the dataset at ``path``, or, where its
    manifest has no such split and ``holdout`` is set, the fraction of its training utterances
    that the trainer held out (``data.holdout``; the same utterances for every run)."""
    path: str
    split: str = "test"
    holdout: float | None = None


def read_manifest(dataset_dir, split: str = "test", holdout: float | None = None,
                  tokenizer: dict | None = None) -> dict:
    """The manifest of a unit dataset that has ``split`` (or, with ``holdout``, a training split
    to take it from) and, when given, was encoded with ``tokenizer``; else one ZeroShotError."""
    from slmjax.analysis.zeroshot.runs import read_json
    dataset_dir = Path(dataset_dir)
    if not (dataset_dir / "manifest.json").is_file():
        raise ZeroShotError(f"{dataset_dir} is not a unit dataset (no manifest.json)")
    manifest = read_json(dataset_dir / "manifest.json", "unit dataset manifest")
    manifest.setdefault("splits", {})
    if split not in manifest["splits"] and holdout is None:
        raise ZeroShotError(f"{dataset_dir} has no {split!r} split "
                            f"(splits: {sorted(manifest['splits'])})")
    if tokenizer is not None and manifest.get("tokenizer") != tokenizer:
        raise ZeroShotError(f"{dataset_dir} was encoded with tokenizer {manifest.get('tokenizer')}, "
                            f"not with this run's {tokenizer}: no test loss of other units")
    return manifest


def _open_split(dataset_dir, split: str, holdout: float | None):
    """The split as the trainer opens it (slmjax.data.open_dataset; see HeldOutSet)."""
    from slmjax.data.errors import DataError
    from slmjax.data.manifest import open_dataset
    in_manifest = split in read_manifest(dataset_dir, split, holdout)["splits"]
    try:
        return open_dataset(str(dataset_dir), splits=(split,) if in_manifest else ("train", split),
                            holdout=holdout).splits[split]
    except DataError as e:
        raise ZeroShotError(str(e)) from None


def split_tokens(dataset_dir, split: str = "test", holdout: float | None = None) -> int:
    """Tokens of one split (see HeldOutSet), from its shards' record lengths."""
    return _open_split(dataset_dir, split, holdout).n_tokens


def read_split(dataset_dir, split: str = "test", holdout: float | None = None) -> tuple[list, dict]:
    """Records of one split as int32 arrays (each ends with EOS), and the manifest (see
    HeldOutSet for ``holdout``)."""
    from array_record.python.array_record_module import ArrayRecordReader
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir, split, holdout)
    if split not in manifest["splits"]:
        return _held_out_of_train(dataset_dir, split, holdout), manifest
    dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
    records = []
    for shard in manifest["splits"][split]["shards"]:
        reader = ArrayRecordReader(str(dataset_dir / shard))
        try:
            records.extend(np.frombuffer(r, dtype=dtype).astype(np.int32) for r in reader.read_all())
        finally:
            reader.close()
    return records, manifest


def _held_out_of_train(dataset_dir: Path, split: str, holdout: float) -> list:
    """The records the trainer held out of the training split (slmjax.data.open_dataset's rule)."""
    held = _open_split(dataset_dir, split, holdout)
    tokens = held.read_spans(np.zeros(1, np.int64), np.array([held.n_tokens], np.int64))
    return np.split(tokens, held.starts[1:-1])


def stream_windows(records, window: int) -> list:
    """The split as one stream (records already end with EOS) cut into windows of ``window + 1``
    tokens that overlap by one, so that every token but the first is predicted exactly once."""
    stream = np.concatenate(records) if records else np.zeros(0, np.int32)
    return [stream[s:s + window + 1] for s in range(0, max(len(stream) - 1, 0), window)
            if len(stream[s:s + window + 1]) >= 2]


def heldout_loss(scorer, dataset_dir, split: str = "test", window: int | None = None,
                 holdout: float | None = None) -> dict:
    """``{"nll_per_unit", "n_tokens", "n_utterances", "dataset", "synthetic", "split"}``: mean NLL over every
    predicted token of the split's stream, scored in windows of the model context (as training sees
    the data). ``holdout``: see HeldOutSet."""
    records, manifest = read_split(dataset_dir, split, holdout)
    held = split not in manifest["splits"]
    windows = stream_windows(records, window or scorer.max_len)
    if not windows:
        raise ZeroShotError(f"{dataset_dir} split {split!r} is empty")
    stats = scorer.score(windows, desc=f"test loss {Path(dataset_dir).name}")
    total = float(np.sum(stats.body_logprob + stats.last_logprob))
    n = int(np.sum(stats.n_targets))
    return {"nll_per_unit": -total / n, "n_tokens": n, "n_utterances": len(records),
            "dataset": str(Path(dataset_dir).resolve()),
            "synthetic": bool(manifest.get("synthetic", False)),
            "split": f"{split} (held out of train, {holdout:g})" if held else split}
