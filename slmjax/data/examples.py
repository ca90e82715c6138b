"""Training examples cut from one split: random `windows` (the paper) or `packed` utterances.

Both are random-access streams: example i (over all epochs) is a pure function of (seed, i), which
makes the data order deterministic, restartable from a step number, and splittable across hosts.

windows: per epoch, each shard's token stream is cut into windows of seq_len+1 consecutive tokens
  with stride seq_len (consecutive windows share one token, so no transition is trained twice in
  an epoch), starting at a random phase in the shard; the shard's slack (fewer than seq_len
  transitions, split between its two ends by the phase) sits out that epoch, and transitions
  between shards are never trained. All windows of all shards are then shuffled together, so
  shards weigh by their length. inputs = window[:-1],
  targets = window[1:]; utterances run into each other through EOS, as in the paper.
  Evaluation reads a held-out split as one stream in order (shard boundaries included), the last
  window padded with weight 0, so every transition of the split is scored once.
packed: per epoch, utterances are shuffled and placed whole, in order, into rows of seq_len slots
  (next fit; an utterance longer than a row is cut into row-sized pieces). Each piece is one
  segment: `segment_ids` (1, 2, ... per row, 0 = padding) and `positions` (restart at 0) let the
  model mask attention across utterances. An utterance of L tokens (its units, then EOS) takes L
  slots: inputs EOS, u_1 .. u_{L-1}, targets u_1 .. u_{L-1}, EOS, so each utterance starts after
  an EOS as in `windows` and as slmjax-eval scores a file ([EOS] + units); a later piece's first
  input is the unit before it. `weights` is 1 on every slot of a piece and 0 on padding.
"""

from __future__ import annotations

import collections
import threading

import numpy as np

from slmjax.data.errors import DataError
from slmjax.data.splits import Split, span_index


class _EpochCache:
  """Keeps the plans of the two most recently used epochs; safe for Grain's reader threads."""

  def __init__(self, build):
    self._build = build
    self._plans = collections.OrderedDict()
    self._lock = threading.Lock()

  def __getstate__(self):  # picklable for Grain worker processes: plans are rebuilt there
    return {"_build": self._build}

  def __setstate__(self, state):
    self.__init__(state["_build"])

  def __call__(self, epoch: int):
    with self._lock:
      if epoch not in self._plans:
        self._plans[epoch] = self._build(epoch)
        while len(self._plans) > 2:
          self._plans.popitem(last=False)
      self._plans.move_to_end(epoch)
      return self._plans[epoch]


class WindowStream:
  """Random windows of seq_len+1 tokens from each shard's concatenated utterance stream."""

  def __init__(self, split: Split, seq_len: int, seed: int):
    self.split, self.seq_len, self.seed = split, int(seq_len), int(seed)
    ranges = split.shard_token_ranges()
    lens = ranges[:, 1] - ranges[:, 0]
    self._shard_start = ranges[:, 0]
    self._per_shard = np.maximum(lens - 1, 0) // self.seq_len
    self._slack = np.where(self._per_shard > 0, lens - 1 - self._per_shard * self.seq_len, 0)
    self.examples_per_epoch = int(self._per_shard.sum())
    self.tokens_per_example = float(self.seq_len)  # windows hold no padding
    if self.examples_per_epoch == 0:
      raise DataError(f"split {split.name!r}: {split.n_tokens} tokens do not fill one window of "
                      f"seq_len+1 = {self.seq_len + 1} tokens in any shard")
    self._plan = _EpochCache(self._build)

  def tokens_in(self, n_rows: int) -> int:
    """Targets of weight 1 in the stream's first `n_rows` examples: every slot of a window."""
    return int(n_rows) * self.seq_len

  def _build(self, epoch: int) -> np.ndarray:
    """Start offsets (in the split stream) of this epoch's windows, in training order."""
    rng = np.random.default_rng([self.seed, 0x77, epoch])
    phase = (rng.random(self._slack.size) * (self._slack + 1)).astype(np.int64)
    shard = np.repeat(np.arange(self._per_shard.size), self._per_shard)
    k = span_index(np.zeros_like(self._per_shard), self._per_shard)
    starts = self._shard_start[shard] + phase[shard] + k * self.seq_len
    return rng.permutation(starts)

  def get(self, index: np.ndarray) -> dict:
    """Examples at the given stream indices: inputs/targets int32 [n, seq_len]."""
    index = np.asarray(index, np.int64)
    epoch, pos = np.divmod(index, self.examples_per_epoch)
    starts = np.empty_like(index)
    for e in np.unique(epoch):
      sel = epoch == e
      starts[sel] = self._plan(int(e))[pos[sel]]
    w = self.seq_len + 1
    tok = self.split.read_spans(starts, np.full(index.size, w)).reshape(index.size, w)
    return {"inputs": tok[:, :-1], "targets": tok[:, 1:]}


class EvalWindowStream:
  """A held-out split as one stream, in order: windows of seq_len+1 tokens with stride seq_len,
  the last one padded (weight 0), so each transition of the split is scored exactly once."""

  def __init__(self, split: Split, seq_len: int, pad_id: int):
    self.split, self.seq_len, self.pad_id = split, int(seq_len), int(pad_id)
    if split.n_tokens < 2:
      raise DataError(f"split {split.name!r}: {split.n_tokens} token(s), no transition to score")
    self.examples_per_epoch = -(-(split.n_tokens - 1) // self.seq_len)

  def get(self, index: np.ndarray) -> dict:
    """Examples at the given indices: int32 inputs/targets and float32 weights [n, seq_len]."""
    index = np.asarray(index, np.int64)
    t = self.seq_len
    start = index * t
    length = np.minimum(t + 1, self.split.n_tokens - start)
    window = np.full((index.size, t + 1), self.pad_id, np.int32)
    window[np.repeat(np.arange(index.size), length), span_index(np.zeros_like(length), length)] = (
        self.split.read_spans(start, length))
    weights = (np.arange(t) < (length - 1)[:, None]).astype(np.float32)
    return {"inputs": window[:, :-1], "targets": window[:, 1:], "weights": weights}


# The packed rows' layout, recorded in run.json (data.packed_rows): runs packed before it (each
# utterance began at its first unit) cannot be resumed on these rows without changing their data.
PACKED_ROWS = "eos_first"


class PackedStream:
  """Whole utterances packed into rows of seq_len, with segment ids, positions and weights."""

  def __init__(self, split: Split, seq_len: int, seed: int, pad_id: int, eos_id: int,
               shuffle: bool = True):
    self.split, self.seq_len, self.seed, self.shuffle = split, int(seq_len), int(seed), shuffle
    self.pad_id, self.eos_id = int(pad_id), int(eos_id)
    if split.n_records == 0:
      raise DataError(f"split {split.name!r} has no utterances")
    self._plan = _EpochCache(self._build)
    self._rows = {}  # epoch -> number of rows
    # Reported size of an epoch; epochs differ slightly (packing depends on the order).
    self.examples_per_epoch = self._epoch_rows(0)
    # Utterance tokens per row, padding excluded (the mean over epoch 0).
    self.tokens_per_example = split.n_tokens / self.examples_per_epoch

  def _build(self, epoch: int):
    t = self.seq_len
    rng = np.random.default_rng([self.seed, 0x9a, epoch])
    order = rng.permutation(self.split.n_records) if self.shuffle else np.arange(
        self.split.n_records)
    lens = self.split.lengths[order]
    n_pieces = -(-lens // t)
    rec = np.repeat(order, n_pieces)
    a = span_index(np.zeros_like(n_pieces), n_pieces) * t
    full = self.split.lengths[rec]
    length = np.minimum(t, full - a)
    head = (a == 0).astype(np.int64)   # the utterance's first piece: its first input is EOS
    cum = np.concatenate([[0], np.cumsum(length)])
    # Next fit: a row starting at piece i ends before piece nxt[i] (> i: no piece exceeds t).
    # Only the walk from row to row is sequential; as a list lookup it is ~10x a bisection per row.
    nxt = (np.searchsorted(cum, cum[:-1] + t, side="right") - 1).tolist()
    ptr, i, n = [0], 0, length.size
    while i < n:
      i = nxt[i]
      ptr.append(i)
    return (self.split.starts[rec] + a, length, head, np.asarray(ptr, np.int64))

  def tokens_in(self, n_rows: int) -> int:
    """Utterance tokens (targets of weight 1, padding excluded) in the stream's first `n_rows`
    rows, counted exactly: every whole epoch holds the split's tokens once, and the rows of a
    partial epoch hold the pieces its plan places in them. Epochs differ in row count, so this
    is not `n_rows * tokens_per_example` (epoch 0's mean) except over whole epochs of epoch 0."""
    total, epoch, left = 0, 0, int(n_rows)
    while left > 0:
      rows = self._epoch_rows(epoch)
      if left < rows:
        _, length, _, ptr = self._plan(epoch)
        return total + int(length[:int(ptr[left])].sum())
      total, left, epoch = total + int(self.split.n_tokens), left - rows, epoch + 1
    return total

  def _epoch_rows(self, epoch: int) -> int:
    if epoch not in self._rows:
      self._rows[epoch] = int(self._plan(epoch)[3].size - 1)
    return self._rows[epoch]

  def _locate(self, index: np.ndarray):
    """(epoch, row) of each stream index; epochs have different row counts."""
    rows, total = [], 0
    while total <= int(index.max(initial=0)):
      rows.append(self._epoch_rows(len(rows)))
      total += rows[-1]
    first = np.cumsum([0] + rows)  # stream index of each epoch's first row
    epoch = np.searchsorted(first, index, side="right") - 1
    return epoch, index - first[epoch]

  def get(self, index: np.ndarray) -> dict:
    """Examples at the given stream indices: int32 [n, seq_len] inputs, targets, positions,
    segment_ids and float32 weights."""
    index = np.asarray(index, np.int64)
    n, t = index.size, self.seq_len
    epoch, row = self._locate(index)
    out = {"inputs": np.full((n, t), self.pad_id, np.int32),
           "targets": np.full((n, t), self.pad_id, np.int32),
           "weights": np.zeros((n, t), np.float32),
           "positions": np.zeros((n, t), np.int32),
           "segment_ids": np.zeros((n, t), np.int32)}
    for e in np.unique(epoch):
      sel = np.flatnonzero(epoch == e)
      start, length, head, ptr = self._plan(int(e))
      r = row[sel]
      per_row = ptr[r + 1] - ptr[r]
      item = span_index(ptr[r], per_row)
      out_row = np.repeat(sel, per_row)
      seg = span_index(np.ones_like(per_row), per_row)            # 1, 2, ... within each row
      l, h = length[item], head[item]
      row_off = np.cumsum(l) - l
      slot0 = row_off - np.repeat(row_off[np.cumsum(per_row) - per_row], per_row)
      # each piece's l + 1 tokens: the one before it (EOS for an utterance's first piece, else
      # the unit before the piece), then the piece; inputs are the first l, targets the last l
      src = np.cumsum(l + 1) - (l + 1)                            # item start in `tok`
      tok = np.full(int(src[-1] + l[-1] + 1), self.eos_id, np.int32)
      read = np.ones(tok.size, bool)
      read[src[h == 1]] = False
      tok[read] = self.split.read_spans(start[item] - 1 + h, l + 1 - h)
      j = span_index(np.zeros_like(l), l)
      dst_row, dst_col = np.repeat(out_row, l), np.repeat(slot0, l) + j
      s = np.repeat(src, l) + j
      out["inputs"][dst_row, dst_col] = tok[s]
      out["targets"][dst_row, dst_col] = tok[s + 1]
      out["weights"][dst_row, dst_col] = 1.0
      out["positions"][dst_row, dst_col] = j
      out["segment_ids"][dst_row, dst_col] = np.repeat(seg, l)
    return out


def check_mode(mode: str) -> None:
  if mode not in ("windows", "packed"):
    raise DataError(f"data.mode must be 'windows' or 'packed', got {mode!r}")


def make_stream(split: Split, mode: str, seq_len: int, seed: int, pad_id: int, eos_id: int):
  """The training example stream of a split for `mode` ('windows' or 'packed')."""
  check_mode(mode)
  if mode == "windows":
    return WindowStream(split, seq_len, seed)
  return PackedStream(split, seq_len, seed, pad_id, eos_id)


def make_eval_stream(split: Split, mode: str, seq_len: int, pad_id: int, eos_id: int):
  """The held-out example stream of a split, in a fixed order."""
  check_mode(mode)
  if mode == "windows":
    return EvalWindowStream(split, seq_len, pad_id)
  return PackedStream(split, seq_len, 0, pad_id, eos_id, shuffle=False)
