"""Causal self-attention kernels.

`jax.nn.dot_product_attention` everywhere it is fast (cuDNN flash attention on GPU, XLA on TPU);
on CPU a blockwise causal attention (slmjax.model.blockwise) that never computes the fully-masked
upper blocks and keeps its working set in cache.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from slmjax.model.blockwise import blockwise_causal_attention


def causal_attention(q, k, v, segment_ids=None, *, impl: str = "auto", block: int = 512):
    """Causal attention of q, k, v [B,T,N,H]; segment_ids [B,T] masks attention across segments.
    Returns [B,T,N,H]."""
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
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True, implementation=impl)
