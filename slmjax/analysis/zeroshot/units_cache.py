"""Benchmark audio -> units, cached per (benchmark set, tokenizer identity).

Ten checkpoints of a run (or ten runs sharing a tokenizer) encode each benchmark once. A cache file
records the tokenizer identity that made it; reading it with another tokenizer is refused. A file
that cannot be read (truncated, from an older slmjax) is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
from absl import logging
from tqdm import tqdm

from slmjax import fileio
from slmjax.analysis.zeroshot.errors import ZeroShotError
from slmjax.errortext import describe


# While a benchmark is encoded, the cache is rewritten (atomically) at most this often, so that a
# killed slmjax-eval resumes the encoding where it stood.
WRITE_EVERY_SECONDS = 60.0


def identity_key(identity: dict) -> str:
    """Short stable hash of a tokenizer identity dict."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir(benchmarks_root) -> Path:
    """``<benchmarks>/.slmjax_units`` when it can be written, else ``units`` in slmjax's cache
    folder (``$SLMJAX_CACHE``, default ``~/.cache/slmjax``)."""
    beside = Path(benchmarks_root) / ".slmjax_units"
    if fileio.dir_write_problem(beside) is None:
        return beside
    return Path(fileio.cache_dir("units"))


def cache_path(cache_dir, bench, identity) -> Path:
    where = hashlib.sha256(str(Path(bench.directory).resolve()).encode()).hexdigest()[:8]
    return Path(cache_dir) / identity_key(identity) / f"{bench.name}-{where}.npz"


def file_stamp(audio) -> tuple:
    """What the cache keys a file's units by: (size, mtime_ns, ctime_ns) of one stat.

    Overwriting a file changes its mtime; ctime also catches tools that restore an old mtime with
    the new content (cp -p, rsync -t, tar), as no tool can set ctime back. A content hash would read
    the whole benchmark (GBs) on every call; a stamp that changed without the content costs one
    re-encode, never stale units.
    """
    st = os.stat(audio)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _read_cache(path: Path, identity: dict) -> dict:
    """stem -> (units, stamp) of a cache file; {} (with a warning) if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            cached_identity = json.loads(str(z["identity"]))
            stems = [str(s) for s in z["stems"]]
            offsets, flat, stamps = z["offsets"], z["units"], z["stamps"]
        if len(offsets) != len(stems) + 1 or offsets[-1] != len(flat) or len(stamps) != len(stems):
            raise ValueError("inconsistent arrays")
    except Exception as e:  # noqa: BLE001 - truncated, corrupt or older format: encode again
        logging.warning("units cache %s cannot be read (%s): encoding again", path, describe(e))
        return {}
    if cached_identity != identity:
        raise ZeroShotError(
            f"cached units {path} were made by tokenizer {cached_identity}, but this run's "
            f"tokenizer is {identity}; delete the file or use another --units_cache")
    return {s: (flat[offsets[i]:offsets[i + 1]].astype(np.int32), tuple(int(v) for v in stamps[i]))
            for i, s in enumerate(stems)}


@contextlib.contextmanager
def _writing(cache_dir):
    """An OSError while making or writing the cache is one ZeroShotError naming ``cache_dir``."""
    try:
        yield
    except OSError as e:
        raise ZeroShotError(f"units cache {cache_dir} cannot be written ({describe(e)}); pass "
                            "--units_cache=DIR, a folder slmjax-eval can write") from None


def _write_cache(path: Path, identity: dict, entries: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    stems = sorted(entries)
    lens = [len(entries[s][0]) for s in stems]
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    flat = (np.concatenate([entries[s][0] for s in stems]) if stems else np.zeros(0)).astype(np.int32)
    with fileio.atomic_path(path) as tmp:
        np.savez(tmp, identity=json.dumps(identity, sort_keys=True), stems=np.array(stems, dtype=str),
                 offsets=offsets, units=flat,
                 stamps=np.array([entries[s][1] for s in stems], np.int64).reshape(len(stems), 3))


def encode_benchmark(bench, tokenizer, cache_dir, identity: dict | None = None,
                     progress: bool = True):
    """Units of every file of ``bench``: ``(units: stem -> int32 array, skipped: stem -> reason)``.

    Files already in the cache with the same :func:`file_stamp` are reused; the rest are encoded with
    ``tokenizer.encode_file`` one at a time (each at its own length) and the cache is rewritten
    atomically. ``identity`` defaults to ``tokenizer.identity``.
    """
    identity = identity if identity is not None else tokenizer.identity
    path = cache_path(cache_dir, bench, identity)
    cached = _read_cache(path, identity) if path.exists() else {}
    units, skipped, entries, todo = {}, {}, {}, []
    for stem, audio in bench.files.items():
        stamp = file_stamp(audio)
        if stem in cached and cached[stem][1] == stamp:
            entries[stem] = cached[stem]
        else:
            todo.append((stem, audio, stamp))
    if todo:   # before any file is encoded
        with _writing(cache_dir):
            path.parent.mkdir(parents=True, exist_ok=True)
    last_write = time.monotonic()
    for stem, audio, stamp in tqdm(todo, desc=f"encoding {bench.name}", disable=not progress or
                                  not todo, leave=False):
        try:
            ids = np.asarray(tokenizer.encode_file(str(audio)), np.int32)
        except Exception as e:  # noqa: BLE001 - a corrupt file is skipped and recorded
            skipped[stem] = f"cannot encode: {describe(e)}"
            continue
        entries[stem] = (ids, stamp)
        if time.monotonic() - last_write >= WRITE_EVERY_SECONDS:
            # a killed run resumes from here, not from the benchmark's first file
            with _writing(cache_dir):
                _write_cache(path, identity, entries)
            last_write = time.monotonic()
    if todo:
        with _writing(cache_dir):
            _write_cache(path, identity, entries)
    for stem, (ids, _) in entries.items():
        if len(ids) == 0:
            skipped[stem] = "no units (silent or too short)"
        elif stem in bench.files:
            units[stem] = ids
    return units, skipped
