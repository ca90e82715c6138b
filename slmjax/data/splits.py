"""Token streams of one dataset split: ArrayRecord shards (bulk reads) or in-memory arrays.

A split is a sequence of utterances (records) grouped in shards. Its tokens form one global stream
(records in shard order); `starts[r]` is the stream offset of record r. Windows and packed rows are
described as spans of that stream and read in bulk with `read_spans`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import os
import resource
import threading

import numpy as np

from slmjax import fileio
from slmjax.data.errors import DataError


@dataclasses.dataclass
class Split:
  """Common part: record lengths, shard boundaries (in records) and the stream offsets."""

  name: str
  lengths: np.ndarray          # int64 [R] tokens per record
  shard_records: np.ndarray    # int64 [S+1] record index where each shard starts

  def __post_init__(self):
    self.lengths = np.asarray(self.lengths, np.int64)
    self.starts = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

  @property
  def n_tokens(self) -> int:
    return int(self.starts[-1])

  @property
  def n_records(self) -> int:
    return int(self.lengths.size)

  def shard_token_ranges(self) -> np.ndarray:
    """int64 [S, 2]: [start, end) of each shard in the split's token stream."""
    b = self.starts[self.shard_records]
    return np.stack([b[:-1], b[1:]], axis=1)

  def read_spans(self, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Tokens of the stream spans [start_i, start_i + length_i), concatenated (int32)."""
    raise NotImplementedError


def _ramp(lengths: np.ndarray) -> np.ndarray:
  """concatenate([arange(n) for n in lengths]) without a Python loop."""
  lengths = np.asarray(lengths, np.int64)
  total = int(lengths.sum())
  offs = np.repeat(np.cumsum(lengths) - lengths, lengths)
  return np.arange(total, dtype=np.int64) - offs


def span_index(start: np.ndarray, length: np.ndarray) -> np.ndarray:
  """Flat stream indices covered by the spans, in span order."""
  return np.repeat(np.asarray(start, np.int64), length) + _ramp(length)


class MemorySplit(Split):
  """A split held in memory as one token array (synthetic streams, tests)."""

  def __init__(self, name: str, tokens: np.ndarray, lengths: np.ndarray, shard_records):
    super().__init__(name, lengths, np.asarray(shard_records, np.int64))
    self.tokens = np.asarray(tokens, np.int32)
    assert self.tokens.size == self.n_tokens

  def read_spans(self, start, length):
    return self.tokens[span_index(start, length)]


class PrefixSplit(Split):
  """The first `n_tokens` tokens of another split's stream (data.max_unique_tokens).

  Records are taken whole in stream (shard) order; the record that crosses `n_tokens` is cut
  there. Stream offsets below `n_tokens` are the base split's, so reads go straight to it.
  """

  def __init__(self, base: Split, n_tokens: int):
    n_tokens = int(n_tokens)
    if not 0 < n_tokens <= base.n_tokens:
      raise DataError(f"split {base.name!r}: a prefix of {n_tokens} tokens is not in "
                      f"1..{base.n_tokens}")
    k = int(np.searchsorted(base.starts, n_tokens, side="left"))   # records touched
    lengths = base.lengths[:k].copy()
    lengths[-1] = n_tokens - base.starts[k - 1]
    bounds = base.shard_records[base.shard_records < k]
    super().__init__(f"{base.name} (first {n_tokens} tokens)", lengths,
                     np.append(bounds, k).astype(np.int64))
    self.base = base

  def read_spans(self, start, length):
    return self.base.read_spans(start, length)


class ArrayRecordSplit(Split):
  """A split stored as ArrayRecord shards, one record per utterance (see docs/interfaces.md).

  Records are fetched in bulk, one `ArrayRecordReader.read(positions)` call per shard touched
  (the C++ reader reads them in parallel), and decoded with one `np.frombuffer` over their
  concatenation. Readers come from the process-wide pool `READERS`.
  """

  def __init__(self, name: str, paths: list[str], dtype: str, lengths: np.ndarray,
               shard_records: np.ndarray, subset: np.ndarray | None = None):
    """lengths/shard_records describe all records of the shards; `subset` (sorted record
    indices) restricts the split to those records (a held-out part, or the rest)."""
    lengths = np.asarray(lengths, np.int64)
    shard_records = np.asarray(shard_records, np.int64)
    self._phys_bounds = shard_records
    self._phys = None
    if subset is not None:
      self._phys = np.asarray(subset, np.int64)
      lengths = lengths[self._phys]
      shard_records = np.searchsorted(self._phys, shard_records).astype(np.int64)
    super().__init__(name, lengths, shard_records)
    self.paths = list(paths)
    self.dtype = np.dtype(dtype).newbyteorder("<")

  def read_records(self, records: np.ndarray) -> np.ndarray:
    """Tokens of the given (sorted, unique) records, concatenated."""
    phys = records if self._phys is None else self._phys[records]
    shard = np.searchsorted(self._phys_bounds, phys, side="right") - 1
    cuts = np.flatnonzero(np.diff(shard)) + 1
    raw = []
    for part in np.split(np.arange(records.size), cuts):
      if part.size == 0:
        continue
      s = int(shard[part[0]])
      pos = phys[part] - self._phys_bounds[s]
      with READERS.use(self.paths[s]) as reader:
        if pos[-1] - pos[0] + 1 == pos.size:  # a contiguous run: one range read
          raw.extend(reader.read(int(pos[0]), int(pos[-1]) + 1))
        else:
          raw.extend(reader.read(pos.tolist()))
    out = np.frombuffer(b"".join(raw), dtype=self.dtype)
    if out.size != int(self.lengths[records].sum()):
      raise DataError(f"split {self.name!r}: records changed on disk since the dataset was opened")
    return out.astype(np.int32)

  def read_spans(self, start, length):
    start = np.asarray(start, np.int64)
    length = np.asarray(length, np.int64)
    r0 = np.searchsorted(self.starts, start, side="right") - 1
    r1 = np.searchsorted(self.starts, start + length - 1, side="right") - 1
    records = np.unique(span_index(r0, r1 - r0 + 1))
    buf = self.read_records(records)
    buf_start = np.cumsum(self.lengths[records]) - self.lengths[records]
    # Records r0..r1 of each span are all present and consecutive in the buffer.
    first = buf_start[np.searchsorted(records, r0)] + (start - self.starts[r0])
    return buf[span_index(first, length)]


def open_reader(path: str):
  """An ArrayRecord reader of one shard (the options Grain's ArrayRecordDataSource uses)."""
  from array_record.python.array_record_module import ArrayRecordReader  # pylint: disable=g-import-not-at-top
  return ArrayRecordReader(path, options="readahead_buffer_size:0", file_reader_buffer_size=32768)


class ReaderPool:
  """Open ArrayRecord readers by path, shared by every split and reader thread of the process.

  At most `max_open` stay open, idle ones closed least recently used first: a reader per shard
  kept for good runs a dataset of thousands of shards out of the process's open-file limit.
  """

  def __init__(self, max_open: int):
    self.max_open = max_open
    self._open = collections.OrderedDict()  # path -> reader, least recently used first
    self._users = collections.Counter()
    self._lock = threading.Lock()

  @contextlib.contextmanager
  def use(self, path: str):
    """The reader of `path`, not closed while the block runs."""
    with self._lock:
      reader = self._claim(path)
    if reader is None:
      fresh = open_reader(path)  # outside the lock: opening reads the file's index
      with self._lock:
        reader = self._claim(path) or self._open.setdefault(path, fresh)
        if reader is fresh:
          self._users[path] += 1
      if reader is not fresh:
        fresh.close()
    try:
      yield reader
    finally:
      with self._lock:
        self._users[path] -= 1
        self._close_idle()

  def forget(self):
    """Drops the readers without closing them (a forked child: they are its parent's)."""
    self._open, self._users = collections.OrderedDict(), collections.Counter()
    self._lock = threading.Lock()

  def _claim(self, path: str):
    reader = self._open.get(path)
    if reader is not None:
      self._open.move_to_end(path)
      self._users[path] += 1
    return reader

  def _close_idle(self):
    excess = len(self._open) - self.max_open
    if excess > 0:
      for p in [p for p in self._open if not self._users[p]][:excess]:
        self._open.pop(p).close()
        del self._users[p]


def _reader_budget() -> int:
  """Readers kept open: a quarter of the open-file limit (the rest for checkpoints, sockets...)."""
  soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
  return 4096 if soft == resource.RLIM_INFINITY else max(4, min(4096, soft // 4))


READERS = ReaderPool(_reader_budget())
os.register_at_fork(after_in_child=READERS.forget)


# ---------------------------------------------------------------------------------------------
# Record-length index of ArrayRecord shards (needed to address the token stream), cached on disk.

def _cache_dir() -> str:
  return fileio.cache_dir("record_lengths")


def _cache_key(path: str, *checks) -> str:
  """The shard's identity (path, size, mtime) and everything else the cached result depends on."""
  st = os.stat(path)
  ident = "|".join(map(str, [os.path.realpath(path), st.st_size, st.st_mtime_ns, *checks]))
  return hashlib.sha256(ident.encode()).hexdigest()[:32]


def shard_lengths(path: str, dtype: np.dtype, vocab_size: int, eos_id: int, pad_id: int,
                  batch: int = 8192) -> np.ndarray:
  """Tokens per record of one shard; checks every record's ids on first read, then cached."""
  cache = os.path.join(_cache_dir(), _cache_key(path, np.dtype(dtype).str, vocab_size, eos_id,
                                                pad_id) + ".npy")
  if os.path.exists(cache):
    try:
      return np.load(cache)
    except (OSError, ValueError):
      pass
  name = os.path.basename(path)
  try:
    reader = open_reader(path)
    n = reader.num_records()
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"shard {name}: not a readable ArrayRecord file (truncated or corrupt?): "
                    f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
  itemsize = np.dtype(dtype).itemsize
  lengths = np.empty(n, np.int64)
  for lo in range(0, n, batch):
    hi = min(n, lo + batch)
    try:
      raw = reader.read(lo, hi)
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f"shard {name}: records {lo}..{hi - 1} unreadable (truncated or "
                      f"corrupt?): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                      ) from None
    nbytes = np.fromiter((len(r) for r in raw), np.int64, len(raw))
    odd = np.flatnonzero((nbytes % itemsize != 0) | (nbytes == 0))
    if odd.size:
      raise DataError(f"shard {name}: record {lo + odd[0]}: empty or not a whole number of "
                      f"{dtype} ids")
    lengths[lo:hi] = nbytes // itemsize
    ids = np.frombuffer(b"".join(raw), dtype=np.dtype(dtype).newbyteorder("<"))
    problem = _record_problem(ids, lengths[lo:hi], vocab_size, eos_id, pad_id)
    if problem:
      raise DataError(f"shard {name}: record {lo + problem[0]}: {problem[1]}")
  try:
    ok = reader.ok()
    reader.close()
  except Exception:  # pylint: disable=broad-except
    ok = False
  if not ok:
    raise DataError(f"shard {name}: ArrayRecord reader reports an error (truncated or corrupt?)")
  try:
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with fileio.atomic_path(cache) as tmp:
      np.save(tmp, lengths)
  except OSError:
    pass  # a read-only cache only costs a re-scan next time
  return lengths


def _record_problem(ids: np.ndarray, lengths: np.ndarray, vocab_size: int, eos_id: int,
                    pad_id: int) -> tuple[int, str] | None:
  """(record, what is wrong) for the first of these records whose ids break the dataset's
  contract (unit ids, then EOS as the last id and only there, never PAD), or None."""
  last = np.zeros(ids.size, bool)
  last[np.cumsum(lengths) - 1] = True
  bad = (ids < 0) | (ids >= vocab_size) | (ids == pad_id) | ((ids == eos_id) != last)
  if not bad.any():
    return None
  i = int(np.argmax(bad))
  rec = int(np.searchsorted(np.cumsum(lengths), i, side="right"))
  x, pos = int(ids[i]), i - int(lengths[:rec].sum())
  if x < 0:
    return rec, f"unit id {x} is negative"
  if x >= vocab_size:
    return rec, f"unit id {x} >= vocab_size {vocab_size} stated by the manifest"
  if x == pad_id:
    return rec, f"pad_id {x} at position {pos}"
  if x == eos_id:
    return rec, f"eos_id {x} at position {pos}, not at its end"
  return rec, f"last id {x} is not eos_id {eos_id}"
