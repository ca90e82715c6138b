"""Benchmark audio -> units, cached per (benchmark set, tokenizer identity).

Ten checkpoints of a run (or ten runs sharing a tokenizer) encode each benchmark once. A cache file
records the tokenizer identity that made it; reading it with another tokenizer is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slmjax import fileio
from slmjax.analysis.zeroshot.errors import ZeroShotError


def identity_key(identity: dict) -> str:
    """Short stable hash of a tokenizer identity dict."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir(benchmarks_root) -> Path:
    """``<benchmarks>/.slmjax_units`` when writable, else ``~/.cache/slmjax/units``."""
    root = Path(benchmarks_root)
    if os.access(root, os.W_OK):
        return root / ".slmjax_units"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "slmjax" / "units"


def cache_path(cache_dir, bench, identity) -> Path:
    where = hashlib.sha256(str(Path(bench.directory).resolve()).encode()).hexdigest()[:8]
    return Path(cache_dir) / identity_key(identity) / f"{bench.name}-{where}.npz"


def _read_cache(path: Path, identity: dict):
    with np.load(path, allow_pickle=False) as z:
        cached_identity = json.loads(str(z["identity"]))
        if cached_identity != identity:
            raise ZeroShotError(
                f"cached units {path} were made by tokenizer {cached_identity}, but this run's "
                f"tokenizer is {identity}; delete the file or use another --units_cache")
        stems = [str(s) for s in z["stems"]]
        offsets, flat, sizes = z["offsets"], z["units"], z["sizes"]
    return {s: (flat[offsets[i]:offsets[i + 1]].astype(np.int32), int(sizes[i]))
            for i, s in enumerate(stems)}


def _write_cache(path: Path, identity: dict, entries: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    stems = sorted(entries)
    lens = [len(entries[s][0]) for s in stems]
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    flat = (np.concatenate([entries[s][0] for s in stems]) if stems else np.zeros(0)).astype(np.int32)
    with fileio.atomic_path(path) as tmp:
        np.savez(tmp, identity=json.dumps(identity, sort_keys=True), stems=np.array(stems, dtype=str),
                 offsets=offsets, units=flat, sizes=np.array([entries[s][1] for s in stems], np.int64))


def encode_benchmark(bench, tokenizer, cache_dir, identity: dict | None = None,
                     progress: bool = True):
    """Units of every file of ``bench``: ``(units: stem -> int32 array, skipped: stem -> reason)``.

    Files already in the cache with the same size are reused; the rest are encoded with
    ``tokenizer.encode_file`` one at a time (each at its own length) and the cache is rewritten
    atomically. ``identity`` defaults to ``tokenizer.identity``.
    """
    identity = identity if identity is not None else tokenizer.identity
    path = cache_path(cache_dir, bench, identity)
    cached = _read_cache(path, identity) if path.exists() else {}
    units, skipped, entries, todo = {}, {}, {}, []
    for stem, audio in bench.files.items():
        size = os.path.getsize(audio)
        if stem in cached and cached[stem][1] == size:
            entries[stem] = cached[stem]
        else:
            todo.append((stem, audio, size))
    for stem, audio, size in tqdm(todo, desc=f"encoding {bench.name}", disable=not progress or
                                  not todo, leave=False):
        try:
            ids = np.asarray(tokenizer.encode_file(str(audio)), np.int32)
        except Exception as e:  # noqa: BLE001 - a corrupt file is skipped and recorded
            skipped[stem] = f"cannot encode: {type(e).__name__}: {e}".splitlines()[0]
            continue
        entries[stem] = (ids, size)
    if todo:
        _write_cache(path, identity, {s: e for s, e in entries.items()})
    for stem, (ids, _) in entries.items():
        if len(ids) == 0:
            skipped[stem] = "no units (silent or too short)"
        elif stem in bench.files:
            units[stem] = ids
    return units, skipped
