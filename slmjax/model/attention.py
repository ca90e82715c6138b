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


def cudnn_shape_problem(head_dim: int, seq_len: int, max_head_dim: int = 256) -> str | None:
    """Why cuDNN's fused attention (as jax calls it) cannot train on these shapes, or None: a head
    dimension that is not a multiple of 8 or over 256 (128 before Hopper), or an odd length (its
    backward needs an even one; the forward alone takes any)."""
    if head_dim % 8:
        return f"head_dim {head_dim} is not a multiple of 8"
    if head_dim > max_head_dim:
        return f"head_dim {head_dim} is over {max_head_dim}"
    if seq_len % 2:
        return f"its backward needs an even sequence length, got {seq_len}"
    return None


def resolve(impl: str, dtype, head_dim: int = 64, seq_len: int = 2) -> str:
    """The kernel "auto" stands for on the platform traced for (slmjax.model.platform): on a GPU,
    cuDNN where it takes the shapes (head dims up to 128, the limit before Hopper), else XLA's."""
    if impl != "auto":
        return impl
    backend = platform.backend()
    if backend == "cpu":
        return "blockwise"
    if backend == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
        return "xla" if cudnn_shape_problem(head_dim, seq_len, 128) else "cudnn"
    return "splash" if backend == "tpu" else "xla"


def causal_attention(q, k, v, segment_ids=None, *, impl: str = "auto", block: int = 512):
    """Causal attention of q, k, v [B,T,N,H]; segment_ids [B,T] masks attention across segments.
    Returns [B,T,N,H]."""
    impl = resolve(impl, q.dtype, q.shape[-1], q.shape[1])
    if impl == "blockwise":
        return blockwise_causal_attention(q, k, v, segment_ids, block)
    if impl == "splash":
        return splash_causal_attention(q, k, v, segment_ids, block)
    mask = None
    if segment_ids is not None:
        mask = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True, implementation=impl)
