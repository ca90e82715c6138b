"""Unit id conventions (docs/interfaces.md): units 0..K-1, EOS = K, PAD = K + 1, vocab K + 2.

With coarse tokens (SentencePiece over units) the same rule holds over the P piece ids.
"""

from __future__ import annotations

import numpy as np


def special_ids(n_base: int) -> dict:
    """EOS, PAD and vocab size for ``n_base`` ordinary ids (K units or P pieces)."""
    return {"eos_id": n_base, "pad_id": n_base + 1, "vocab_size": n_base + 2}


def storage_dtype(vocab_size: int) -> str:
    """Smallest unsigned dtype holding every id (the manifest's ``dtype``)."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def collapse(units, return_durations: bool = False):
    """Collapse runs of repeated ids: [3,3,7,7,3] -> [3,7,3] (durations [2,2,1])."""
    u = np.asarray(units).reshape(-1)
    if u.size == 0:
        out = u.astype(np.int32)
        return (out, np.zeros(0, np.int32)) if return_durations else out
    starts = np.flatnonzero(np.concatenate([[True], u[1:] != u[:-1]]))
    out = u[starts].astype(np.int32)
    if not return_durations:
        return out
    durations = np.diff(np.append(starts, u.size)).astype(np.int32)
    return out, durations


def with_eos(ids, eos_id: int) -> np.ndarray:
    """Append EOS to one utterance's ids."""
    return np.append(np.asarray(ids, np.int32), np.int32(eos_id)).astype(np.int32)


def to_record(ids, dtype: str) -> bytes:
    """One ArrayRecord record: little-endian ids of the manifest dtype."""
    arr = np.asarray(ids)
    info = np.iinfo(dtype)
    if arr.size and (arr.min() < 0 or arr.max() > info.max):
        raise ValueError(f"ids out of range for {dtype}")
    return arr.astype(np.dtype(dtype).newbyteorder("<")).tobytes()


def from_record(record: bytes, dtype: str) -> np.ndarray:
    """Inverse of :func:`to_record`, as int32."""
    return np.frombuffer(record, dtype=np.dtype(dtype).newbyteorder("<")).astype(np.int32)
