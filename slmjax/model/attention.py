"""Causal self-attention kernels.

`jax.nn.dot_product_attention` on GPU (cuDNN flash attention in bfloat16, XLA otherwise); on TPU
Pallas splash attention (slmjax.model.splash); on CPU a blockwise causal attention
(slmjax.model.blockwise) that never computes the fully-masked upper blocks and keeps its working
set in cache.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from slmjax.model import platform
from slmjax.model.blockwise import blockwise_causal_attention
from slmjax.model.splash import splash_causal_attention


def resolve(impl: str, dtype) -> str:
    """The kernel "auto" stands for on the platform traced for (slmjax.model.platform)."""
    if impl != "auto":
        return impl
    backend = platform.backend()
    if backend == "cpu":
        return "blockwise"
    if backend == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
        return "cudnn"
    return "splash" if backend == "tpu" else "xla"


def causal_attention(q, k, v, segment_ids=None, *, impl: str = "auto", block: int = 512):
    """Causal attention of q, k, v [B,T,N,H]; segment_ids [B,T] masks attention across segments.
    Returns [B,T,N,H]."""
    impl = resolve(impl, q.dtype)
    if impl == "blockwise":
        return blockwise_causal_attention(q, k, v, segment_ids, block)
    if impl == "splash":
        return splash_causal_attention(q, k, v, segment_ids, block)
    mask = None
    if segment_ids is not None:
        mask = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True, implementation=impl)
