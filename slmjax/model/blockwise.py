"""Blockwise causal attention for the CPU, with a flash-attention-style backward pass.

Plain XLA attention on the CPU streams every [B, N, T, T] intermediate (scores, mask, softmax,
its gradient) through main memory, and autodiff saves the probabilities of every layer for the
backward pass. Here the work is cut so that it stays in cache and skips what the causal mask
removes:

- a loop over heads (`lax.map`): one head's blocks of a few MB are all that is live at a time;
- per query block (rows s..e), keys 0..e only: the blocks above the diagonal are never computed;
- a custom VJP that saves only the output and the row log-sum-exp, and recomputes each block's
  probabilities in the backward pass (FlashAttention's recipe, Dao et al. 2022).

The loop runs over heads, not batch rows, so that a batch sharded over the mesh stays sharded.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_NEG = float(np.finfo(np.float32).min)


def _blocks(t: int, block: int) -> list[tuple[int, int]]:
    """(start, end) of the query blocks: ceil(t / block) blocks of near-equal size."""
    nb = max(1, -(-t // block))
    edges = [round(i * t / nb) for i in range(nb + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _block_mask(s: int, e: int, seg):
    """[B or 1, e-s, e] boolean: key j <= query i, and in the same segment when seg [B,T] is given."""
    pos = jnp.arange(e)
    mask = (pos[s:e, None] >= pos[None, :])[None]
    if seg is not None:
        mask = mask & (seg[:, s:e, None] == seg[:, None, :e])
    return mask


def _scores(q, k, s, e, scale):
    """Scaled float32 scores [B, e-s, e] of query rows s..e against keys 0..e (q, k: [B, T, H])."""
    return jnp.einsum("bqh,bkh->bqk", q[:, s:e], k[:, :e], preferred_element_type=jnp.float32) * scale


def _head_forward(q, k, v, seg, block):
    """One head: q, k, v [B, T, H] -> (output [B, T, H], row log-sum-exp [B, T] float32)."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    outs, lses = [], []
    for s, e in _blocks(q.shape[1], block):
        x = jnp.where(_block_mask(s, e, seg), _scores(q, k, s, e, scale), _NEG)
        m = jnp.max(x, axis=-1, keepdims=True)
        p = jnp.exp(x - m)
        denom = jnp.sum(p, axis=-1, keepdims=True)
        o = jnp.einsum("bqk,bkh->bqh", p.astype(v.dtype), v[:, :e], preferred_element_type=jnp.float32)
        outs.append((o / denom).astype(q.dtype))
        lses.append((m + jnp.log(denom))[..., 0])
    return jnp.concatenate(outs, axis=1), jnp.concatenate(lses, axis=1)


def _head_backward(q, k, v, o, lse, do, seg, block):
    """One head's (dq, dk, dv) from the saved output and log-sum-exp (probabilities recomputed)."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    delta = jnp.sum(do.astype(jnp.float32) * o.astype(jnp.float32), axis=-1)  # [B, T]
    dqs = []
    dk = jnp.zeros(k.shape, jnp.float32)
    dv = jnp.zeros(v.shape, jnp.float32)
    for s, e in _blocks(q.shape[1], block):
        p = jnp.where(_block_mask(s, e, seg), jnp.exp(_scores(q, k, s, e, scale) - lse[:, s:e, None]), 0.0)
        dob = do[:, s:e]
        dv = dv.at[:, :e].add(jnp.einsum("bqk,bqh->bkh", p.astype(do.dtype), dob,
                                         preferred_element_type=jnp.float32))
        dp = jnp.einsum("bqh,bkh->bqk", dob, v[:, :e], preferred_element_type=jnp.float32)
        ds = (p * (dp - delta[:, s:e, None]) * scale).astype(q.dtype)
        dqs.append(jnp.einsum("bqk,bkh->bqh", ds, k[:, :e], preferred_element_type=jnp.float32))
        dk = dk.at[:, :e].add(jnp.einsum("bqk,bqh->bkh", ds, q[:, s:e], preferred_element_type=jnp.float32))
    return (jnp.concatenate(dqs, axis=1).astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype))


def _heads_first(x):
    return jnp.moveaxis(x, 1, 0)  # [B, N, ...] -> [N, B, ...]


def _heads_second(x):
    return jnp.moveaxis(x, 0, 1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attention(q, k, v, segment_ids, block):
    return _forward(q, k, v, segment_ids, block)[0]


def _forward(q, k, v, segment_ids, block):
    o, lse = jax.lax.map(lambda a: _head_forward(*a, segment_ids, block),
                         (_heads_first(q), _heads_first(k), _heads_first(v)))
    o = _heads_second(o)
    return o, (q, k, v, segment_ids, o, lse)


def _backward(block, res, do):
    q, k, v, segment_ids, o, lse = res
    grads = jax.lax.map(
        lambda a: _head_backward(*a[:4], a[4], a[5], segment_ids, block),
        (_heads_first(q), _heads_first(k), _heads_first(v), _heads_first(o), lse, _heads_first(do)))
    dseg = None if segment_ids is None else np.zeros(segment_ids.shape, jax.dtypes.float0)
    return (*(_heads_second(g) for g in grads), dseg)


_attention.defvjp(_forward, _backward)


def blockwise_causal_attention(q, k, v, segment_ids=None, block: int = 512):
    """Exact causal attention of q, k, v [B,N,T,H] (heads-major); segment_ids [B,T] masks attention
    across segments. Query block i (rows s..e) attends to keys 0..e only, so the work is about
    (nb + 1) / (2 nb) of full attention for nb blocks."""
    return _attention(q, k, v, segment_ids, int(block))
