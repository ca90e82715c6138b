"""Causal self-attention kernels.

`jax.nn.dot_product_attention` everywhere it is fast (cuDNN flash attention on GPU, XLA on TPU);
on CPU a blockwise causal attention that never computes the fully-masked upper blocks, which is
what makes causal attention cost half of full attention there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _mask(q_pos, k_pos, seg_q, seg_k):
    """Boolean [B or 1, 1, Tq, Tk]: causal, and within one segment when segment ids are given."""
    mask = (q_pos[:, None] >= k_pos[None, :])[None, None]
    if seg_q is not None:
        mask = mask & (seg_q[:, None, :, None] == seg_k[:, None, None, :])
    return mask


def _attend(q, k, v, mask):
    """Softmax attention of q [B,N,Tq,H] over k, v [B,N,Tk,H]; softmax in float32."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = jnp.einsum("bnqh,bnkh->bnqk", q * jnp.asarray(scale, q.dtype), k,
                   preferred_element_type=jnp.float32)
    s = jnp.where(mask, s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    return jnp.einsum("bnqk,bnkh->bnqh", p, v)


def blockwise_causal_attention(q, k, v, segment_ids=None, block: int = 512):
    """Exact causal attention of q, k, v [B,N,T,H], per query block over its key prefix only.

    Query block i (rows s..e) attends to keys 0..e: blocks above the diagonal are skipped, so the
    work is about (nb + 1) / (2 nb) of full attention for nb blocks.
    """
    t = q.shape[2]
    nb = max(1, -(-t // block))
    edges = [round(i * t / nb) for i in range(nb + 1)]
    pos = jnp.arange(t)
    outs = []
    for s, e in zip(edges[:-1], edges[1:]):
        seg_q = None if segment_ids is None else segment_ids[:, s:e]
        seg_k = None if segment_ids is None else segment_ids[:, :e]
        mask = _mask(pos[s:e], pos[:e], seg_q, seg_k)
        outs.append(_attend(q[:, :, s:e], k[:, :, :e], v[:, :, :e], mask))
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=2)


def causal_attention(q, k, v, segment_ids=None, *, impl: str = "auto", block: int = 512):
    """Causal attention of q, k, v [B,N,T,H] (heads-major); segment_ids [B,T] masks attention
    across segments. Returns [B,N,T,H]."""
    if impl == "auto":
        backend = jax.default_backend()
        if backend == "cpu":
            impl = "blockwise"
        elif backend == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16):
            impl = "cudnn"
        else:
            impl = "xla"
    if impl == "blockwise":
        return blockwise_causal_attention(q, k, v, segment_ids, block)
    mask = None
    if segment_ids is not None:
        mask = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
    q, k, v = (x.swapaxes(1, 2) for x in (q, k, v))  # dot_product_attention takes [B,T,N,H]
    out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True, implementation=impl)
    return out.swapaxes(1, 2)
