"""Batched, length-bucketed log-likelihood scoring of token sequences, data-parallel over a mesh.

A sequence ``seq`` is scored as a causal LM scores it: inputs ``seq[:-1]``, targets ``seq[1:]``. For a
benchmark file, ``seq = [EOS] + units + [EOS]``: the sum over all targets but the last is the paper's
numerator, the last target is the terminal EOS. Sequences are grouped into batches of similar length
(``bucket``: right-padded rows; ``pack``: several sequences per row with ``segment_ids`` and reset
positions; ``auto``: whichever plan is cheaper for the given lengths). Padding never enters a score and causal attention never looks right, so a sequence's score
does not depend on the batch it lands in. Per-token log-probs come back in float32 and are summed in
float64 on the host.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm import tqdm

MESH_AXES = ("data", "fsdp", "tensor")


@dataclasses.dataclass
class SeqStats:
    """Per-sequence results: log p summed over all targets but the last, log p of the last target,
    number of targets scored (``len(seq) - 1``, or the context's share of a cut sequence), whether
    the sequence was cut to fit the context, and its whole length."""
    body_logprob: np.ndarray
    last_logprob: np.ndarray
    n_targets: np.ndarray
    truncated: np.ndarray
    seq_len: np.ndarray


@dataclasses.dataclass
class _Batch:
    tokens: np.ndarray      # [B, T] inputs
    targets: np.ndarray     # [B, T]
    positions: np.ndarray | None
    segment_ids: np.ndarray | None
    spans: list             # (seq index, row, start, n_targets)


def bucket_ladder(max_len: int, multiple: int = 8, ratio: float = 1.125) -> list:
    """Row lengths used for buckets: multiples of ``multiple`` growing by ~``ratio``, capped at max_len."""
    ladder, t = [], multiple
    while t < max_len:
        ladder.append(t)
        t = max(t + multiple, math.ceil(t * ratio / multiple) * multiple)
    ladder.append(max_len)
    return ladder


def _rows_for(n: int, full: int, n_dev: int) -> int:
    """Rows of a batch holding ``n`` rows of work: a full batch, else ``n`` rounded up to a step of
    about n/8 (a multiple of n_dev), so that padding rows stay under ~1/8 while batch shapes stay
    few (about eight per octave) and are shared between benchmarks."""
    if n >= full:
        return full
    step = n_dev
    while step * 16 <= n:
        step *= 2
    return min(full, -(-n // step) * step)


def plan_bucketed(lengths, *, max_len, tokens_per_batch, n_dev, pad_id, seqs, multiple=8,
                  ratio=1.125, width=512):
    """Right-padded batches; ``lengths`` are target counts (already <= max_len)."""
    ladder = np.array(bucket_ladder(max_len, multiple, ratio))
    bucket_of = np.searchsorted(ladder, lengths)
    batches = []
    for b in np.unique(bucket_of):
        t = int(ladder[b])
        full = max(n_dev, (tokens_per_batch // t) // n_dev * n_dev)
        members = np.flatnonzero(bucket_of == b)
        members = members[np.argsort(-lengths[members], kind="stable")]
        for s in range(0, len(members), full):
            chunk = members[s:s + full]
            rows = _rows_for(len(chunk), full, n_dev)
            tokens = np.full((rows, t), pad_id, np.int32)
            targets = np.full((rows, t), pad_id, np.int32)
            spans = []
            for r, i in enumerate(chunk):
                n = int(lengths[i])
                tokens[r, :n] = seqs[i][:n]
                targets[r, :n] = seqs[i][1:n + 1]
                spans.append((int(i), r, 0, n))
            batches.append(_Batch(tokens, targets, None, None, spans))
    return batches


def _best_fit(lengths, row_len: int) -> list:
    """Best-fit decreasing: each sequence, longest first, goes to the fullest row it still fits."""
    rows, free = [], []   # free: sorted (remaining capacity, row index)
    for i in np.argsort(-lengths, kind="stable"):
        n = int(lengths[i])
        k = bisect.bisect_left(free, (n, -1))
        if k == len(free):
            rows.append([int(i)])
            bisect.insort(free, (row_len - n, len(rows) - 1))
        else:
            cap, r = free.pop(k)
            rows[r].append(int(i))
            bisect.insort(free, (cap - n, r))
    return rows


def row_cost(row_len: int, width: int) -> float:
    """Relative forward cost of one row: per-token matmuls (~24 d^2 per layer) plus causal
    attention over on average half the row (~2 d T per layer): T (1 + T / (12 d))."""
    return row_len * (1.0 + row_len / (12.0 * width))


def pack_length(lengths, max_len: int, width: int = 512) -> int:
    """Row length for packing: among 1, 2, 4 and 8 times the longest sequence (rounded up to 64,
    at least 256, at most max_len), the cheapest by :func:`row_cost` after best-fit packing."""
    longest = int(max(lengths)) if len(lengths) else 1
    base = max(256, -(-longest // 64) * 64)
    options = sorted({min(max_len, base * m) for m in (1, 2, 4, 8)})
    return min(options, key=lambda t: len(_best_fit(lengths, t)) * row_cost(t, width))


def plan_packed(lengths, *, max_len, tokens_per_batch, n_dev, pad_id, seqs, width=512):
    """Rows holding several sequences each (``segment_ids`` 1.., padding 0), of
    :func:`pack_length`."""
    max_len = pack_length(lengths, max_len, width)
    rows = _best_fit(lengths, max_len)
    full = max(n_dev, (tokens_per_batch // max_len) // n_dev * n_dev)
    batches = []
    for s in range(0, len(rows), full):
        chunk = rows[s:s + full]
        nrows = _rows_for(len(chunk), full, n_dev)
        tokens = np.full((nrows, max_len), pad_id, np.int32)
        targets = np.full((nrows, max_len), pad_id, np.int32)
        positions = np.zeros((nrows, max_len), np.int32)
        segments = np.zeros((nrows, max_len), np.int32)
        spans = []
        for r, row in enumerate(chunk):
            start = 0
            for k, i in enumerate(row):
                n = int(lengths[i])
                tokens[r, start:start + n] = seqs[i][:n]
                targets[r, start:start + n] = seqs[i][1:n + 1]
                positions[r, start:start + n] = np.arange(n)
                segments[r, start:start + n] = k + 1
                spans.append((int(i), r, start, n))
                start += n
        batches.append(_Batch(tokens, targets, positions, segments, spans))
    return batches


def plan_cost(batches, width: int) -> float:
    return sum(b.tokens.shape[0] * row_cost(b.tokens.shape[1], width) for b in batches)


def plan_batches(lengths, *, mode, width=512, **kw):
    """Batches for ``mode`` bucket | pack | auto (auto: the cheaper plan by :func:`plan_cost`)."""
    if mode == "bucket":
        return plan_bucketed(lengths, width=width, **kw)
    if mode == "pack":
        return plan_packed(lengths, width=width, **kw)
    plans = [plan_bucketed(lengths, width=width, **kw), plan_packed(lengths, width=width, **kw)]
    return min(plans, key=lambda p: plan_cost(p, width))


def make_mesh(devices=None):
    """A data-parallel mesh over all devices, with the model's axis names (fsdp = tensor = 1)."""
    devices = list(devices if devices is not None else jax.devices())
    # Auto axes: any model code (sharding constraints by logical names or none) runs unchanged.
    return jax.make_mesh((len(devices), 1, 1), MESH_AXES, devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)


def model_logits_fn(cfg) -> Callable:
    """The ``logits_fn`` of an slmjax model (:func:`slmjax.model.forward`) for :class:`Scorer`, traced
    under the training axis rules so that the CPU attention runs per device under the scoring mesh
    (without them XLA splits its loop over the devices' rows: 1.4x slower on two CPU devices)."""
    import slmjax.model
    from slmjax.train.sharding import axis_rules

    # The model's (cached) skeleton is built here, outside the scoring mesh: under a mesh without
    # the axis rules, NNX would try to resolve logical axis names against it.
    slmjax.model.param_logical_axes(cfg)

    def logits_fn(p, tokens, positions, segment_ids):
        with axis_rules():
            return slmjax.model.forward(cfg, p, tokens, positions=positions, segment_ids=segment_ids)

    return logits_fn


class Scorer:
    """Scores token sequences with ``logits_fn(params, tokens, positions, segment_ids) -> [B,T,V]``.

    ``params`` are replicated over the mesh's devices and batches split along ``data``. The jitted
    function is compiled once per batch shape and reused across checkpoints (:meth:`set_params`).
    """

    def __init__(self, logits_fn: Callable, params, *, max_len: int, pad_id: int, mesh=None,
                 tokens_per_batch: int = 32768, mode: str = "auto", width: int = 512,
                 progress: bool = True):
        if mode not in ("auto", "bucket", "pack"):
            raise ValueError(f"mode must be auto, bucket or pack, got {mode!r}")
        self.width = int(width)
        self.mesh = mesh if mesh is not None else make_mesh()
        self.n_dev = self.mesh.shape["data"]
        self.max_len, self.pad_id, self.mode = int(max_len), int(pad_id), mode
        self.tokens_per_batch = int(tokens_per_batch)
        self.progress = progress
        self._rows = NamedSharding(self.mesh, P("data"))

        def token_logprobs(params, tokens, targets, positions, segment_ids):
            logits = logits_fn(params, tokens, positions, segment_ids).astype(jnp.float32)
            picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
            return picked - jax.nn.logsumexp(logits, axis=-1)

        self._fn = jax.jit(token_logprobs)
        self.set_params(params)

    def set_params(self, params):
        """Swap in another checkpoint of the same model (no recompilation)."""
        self.params = jax.device_put(params, NamedSharding(self.mesh, P()))

    def _put(self, x):
        return None if x is None else jax.device_put(x, self._rows)

    def plan(self, lengths, seqs) -> list:
        """The batches :meth:`score` runs for sequences of these target counts."""
        return plan_batches(lengths, mode=self.mode, width=self.width, max_len=self.max_len,
                            tokens_per_batch=self.tokens_per_batch, n_dev=self.n_dev,
                            pad_id=self.pad_id, seqs=seqs)

    def score(self, seqs, desc: str = "scoring") -> SeqStats:
        """Score every sequence (1-D int arrays of length >= 2); see :class:`SeqStats`.

        Equal sequences are scored once and share the result, so that they tie exactly (a packed
        row's reductions can round a sequence differently at another offset)."""
        seqs = [np.asarray(s, np.int32) for s in seqs]
        if any(len(s) < 2 for s in seqs):
            raise ValueError("every sequence needs at least one target (length >= 2)")
        slot, unique = {}, []
        where = np.empty(len(seqs), np.int64)
        for i, s in enumerate(seqs):
            key = s.tobytes()
            if key not in slot:
                slot[key] = len(unique)
                unique.append(s)
            where[i] = slot[key]
        stats = self._score_unique(unique, desc)
        return SeqStats(*(getattr(stats, f.name)[where] for f in dataclasses.fields(SeqStats)))

    def _score_unique(self, seqs, desc):
        n, ctx = len(seqs), self.max_len
        truncated = np.array([len(s) - 1 > ctx for s in seqs])
        # Too long for the context: keep the end (the part that differs between StoryCloze
        # endings), in two windows of the full context: the one ending at the last-but-one token
        # gives the targets but the last, the one ending at the last token gives that one (one
        # window would give one target fewer than the context holds).
        cut = np.flatnonzero(truncated)
        rows = ([s[-(ctx + 1):] if t else s for s, t in zip(seqs, truncated)]
                + [seqs[i][:-1][-(ctx + 1):] for i in cut])
        body, last, lengths = self._score_rows(rows, desc)
        body[cut], lengths[cut] = body[n:] + last[n:], ctx + 1
        return SeqStats(body[:n], last[:n], lengths[:n], truncated,
                        np.array([len(s) for s in seqs], np.int64))

    def _score_rows(self, seqs, desc):
        """(log p of all targets but the last, of the last, number of targets) of sequences that
        fit the context."""
        lengths = np.array([len(s) - 1 for s in seqs], np.int64)
        batches = self.plan(lengths, seqs)
        body = np.zeros(len(seqs), np.float64)
        last = np.zeros(len(seqs), np.float64)
        pending = collections.deque()

        def drain(until):
            while len(pending) > until:
                batch, out = pending.popleft()
                lp = _to_host(out)
                for i, r, start, n in batch.spans:
                    body[i] = lp[r, start:start + n - 1].sum(dtype=np.float64)
                    last[i] = lp[r, start + n - 1]

        with jax.set_mesh(self.mesh):
            for batch in tqdm(batches, desc=desc, disable=not self.progress, leave=False):
                out = self._fn(self.params, self._put(batch.tokens), self._put(batch.targets),
                               self._put(batch.positions), self._put(batch.segment_ids))
                pending.append((batch, out))
                drain(until=2)   # keep two batches in flight while the host reads results
            drain(until=0)
        return body, last, lengths


def _to_host(x) -> np.ndarray:
    """The whole [B, T] result on every host (multi-host meshes hold only local rows)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


CONVENTIONS = ("mean", "sum", "mean_eos")


def file_scores(stats: SeqStats, convention: str) -> np.ndarray:
    """Per-file scores from benchmark sequences ``[EOS] + units + [EOS]``.

    ``mean`` (the paper's): mean log p of the units, terminal EOS excluded; ``sum``: the same summed;
    ``mean_eos``: mean over the units and the terminal EOS.
    """
    n_units = stats.n_targets - 1
    if convention == "mean":
        return stats.body_logprob / np.maximum(n_units, 1)
    if convention == "sum":
        return stats.body_logprob.copy()
    if convention == "mean_eos":
        return (stats.body_logprob + stats.last_logprob) / stats.n_targets
    raise ValueError(f"unknown convention {convention!r}; one of {CONVENTIONS}")


def benchmark_sequence(units, eos_id: int) -> np.ndarray:
    """``[EOS] + units + [EOS]``: the paper's input convention plus the terminal EOS target."""
    units = np.asarray(units, np.int32)
    return np.concatenate([[eos_id], units, [eos_id]]).astype(np.int32)
