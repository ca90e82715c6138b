"""Causal attention on TPU through Pallas splash attention (jax.experimental.pallas.ops.tpu).

A flash-style kernel: the T x T scores are never written to HBM, and key blocks above the
diagonal are skipped. XLA's attention (`jax.nn.dot_product_attention` on TPU) materialises the
scores and their gradient for every layer: compiled for 16 TPU v4 chips, s155m at the paper's
batch (16 sequences of 2050 per chip) needed 87 GB of temporaries per chip with it.

The kernel tiles the sequence in blocks of 128 to 512 rows, so a length that no block divides
(the paper's 2050) is padded at the end: a padded key lies after every real query, so the causal
mask hides it, and the padded queries' outputs are cut off. Under a mesh the kernel runs inside
`shard_map` over each device's own sequences and heads (a Pallas call is opaque to XLA's
partitioner). Off TPU it runs in Pallas's interpreter (for tests: exact but slow).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from slmjax.model import platform
from slmjax.model.partitioning import per_device_heads

_LANE = 128  # the kernel's smallest tile


def tiling(t: int, block: int) -> tuple[int, int]:
    """(padded length, block): the length rounded up to a multiple of 128, and the largest of
    block, block/2, ... that is a multiple of 128 and divides it (128 if none is)."""
    padded = -(-t // _LANE) * _LANE
    b = int(block)
    while b > _LANE and (b % _LANE or padded % b):  # the kernel refuses blocks of 192, 320, ...
        b //= 2
    return padded, b if b > _LANE else _LANE


def _kernel(n_heads: int, length: int, block: int):
    from jax.experimental.pallas.ops.tpu import splash_attention as sa

    mask = sa.MultiHeadMask([sa.CausalMask((length, length))] * n_heads)
    sizes = sa.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                          block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                          use_fused_bwd_kernel=True)
    return sa.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                              interpret=platform.backend() != "tpu")


def _local(q, k, v, seg, block):
    """Splash attention of one device's q, k, v [B, T, N, H] (segment ids [B, T] or None)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import SegmentIds

    b, t, n, h = q.shape
    padded, blk = tiling(t, block)
    pad = [(0, 0), (0, padded - t), (0, 0), (0, 0)]
    q = q * jnp.asarray(h ** -0.5, q.dtype)  # the kernel takes pre-scaled queries
    q, k, v = (jnp.pad(x, pad).transpose(0, 2, 1, 3) for x in (q, k, v))  # [B, N, P, H]
    kernel = _kernel(n, padded, blk)
    if seg is None:
        out = jax.vmap(kernel)(q, k, v)
    else:
        seg = jnp.pad(seg.astype(jnp.int32), [(0, 0), (0, padded - t)], mode="edge")
        out = jax.vmap(lambda q, k, v, s: kernel(q, k, v, segment_ids=SegmentIds(s, s)))(q, k, v, seg)
    return out.transpose(0, 2, 1, 3)[:, :t].astype(v.dtype)


def splash_causal_attention(q, k, v, segment_ids=None, block: int = 512):
    """Exact causal attention of q, k, v [B, T, N, H]; segment_ids [B, T] masks attention across
    segments. Returns [B, T, N, H]."""
    return per_device_heads(lambda q, k, v, seg: _local(q, k, v, seg, block), q, k, v, segment_ids,
                            check_vma=False)
