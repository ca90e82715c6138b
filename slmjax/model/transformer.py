"""The paper's Llama-style speech LM as Flax NNX modules.

Pre-norm blocks: x + Attention(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)); final RMSNorm; output
projection tied to the token embedding. Every parameter carries logical axis names in its
`out_sharding` metadata; slmjax.train.sharding maps them onto mesh axes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from slmjax.model.attention import causal_attention
from slmjax.model.config import ModelConfig, resolve_dtype
from slmjax.model.logits import tied_logits
from slmjax.model.partitioning import HEADS, RESIDUAL, constrain
from slmjax.model.qkv import qkv_projection
from slmjax.model.swiglu import swiglu


def _normal(rngs: nnx.Rngs, shape, std: float, dtype, axes) -> nnx.Param:
    value = std * jax.random.normal(rngs.params(), shape, jnp.float32)
    return nnx.Param(value.astype(dtype), out_sharding=axes)


class RMSNorm(nnx.Module):
    """RMSNorm in float32 with a learnable scale (init 1), no bias."""

    def __init__(self, cfg: ModelConfig):
        self.eps = cfg.norm_eps
        self.scale = nnx.Param(jnp.ones((cfg.dim,), cfg.param_dtype), out_sharding=("norm",))

    def __call__(self, x, dtype):
        x = x.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return (x * self.scale[...].astype(jnp.float32)).astype(dtype)


def rope_tables(positions, head_dim: int, theta: float, length: int):
    """(cos, signed sin) [B,T,1,H] float32 of interleaved-pair rotary embedding at `positions`
    [B,T] (or [1,T], shared by the batch), gathered from tables of `length` positions computed once
    (a position outside them gives NaN, jnp.take's fill, rather than a silently wrong angle).

    The tables are computed in float32 as the paper's release computes them (inverse frequencies,
    then position x frequency rounded to float32, then cos and sin): the released weights were
    trained with those angles, which differ from exact ones by up to ~2e-4 rad at position 2050.

    The gather keeps the sines and cosines out of the rotations' fusions: computed there, XLA
    evaluates them for every head of q and k and of their gradients (a [4, 2050, 8, 64] rotation:
    8.4 ms with the sine and cosine fused, 2.2 ms gathered, on the 2-core CPU).
    """
    f32 = np.float32
    exponent = np.arange(0, head_dim, 2, dtype=f32) / f32(head_dim)
    # theta ** exponent rounded once to float32 (NumPy's float32 pow can be 2 ulps off torch's).
    inv_freq = f32(1.0) / np.power(float(theta), exponent.astype(np.float64)).astype(f32)
    angles = np.outer(np.arange(length, dtype=f32), inv_freq).repeat(2, axis=1)  # float32 products
    sign = np.tile([-1.0, 1.0], head_dim // 2)
    cos = np.cos(angles.astype(np.float64)).astype(f32)
    sin = (sign * np.sin(angles.astype(np.float64))).astype(f32)
    return tuple(jnp.take(t, positions, axis=0)[:, :, None] for t in (cos, sin))


def rope(x, tables):
    """Rotary embedding, interleaved pairs (x[2i], x[2i+1]), in float32. x [B,T,N,H], tables from
    `rope_tables`: out[2i] = x[2i] cos - x[2i+1] sin, out[2i+1] = x[2i+1] cos + x[2i] sin, written
    as x * cos + pairswap(x) * signed sin so that it stays one elementwise fusion."""
    cos, sin = tables
    h = x.shape[-1]
    xf = x.astype(jnp.float32)
    swapped = xf.reshape(*x.shape[:-1], h // 2, 2)[..., ::-1].reshape(x.shape)
    return (xf * cos + swapped * sin).astype(x.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        d, n, h, pd = cfg.dim, cfg.n_heads, cfg.head_dim, cfg.param_dtype
        std, out_std = cfg.init_std, cfg.init_std / math.sqrt(2 * cfg.n_layers)
        qkv_axes = ("embed", "heads", "head_dim")
        self.wq = _normal(rngs, (d, n, h), std, pd, qkv_axes)
        self.wk = _normal(rngs, (d, n, h), std, pd, qkv_axes)
        self.wv = _normal(rngs, (d, n, h), std, pd, qkv_axes)
        self.wo = _normal(rngs, (n, h, d), out_std, pd, ("heads", "head_dim", "embed"))

    def __call__(self, x, tables, segment_ids):
        # [B,T,N,H] activations: the projections are plain [B*T, D] matmuls with no transposed
        # copies, and it is the layout dot_product_attention takes.
        cfg, dt = self.cfg, x.dtype
        q, k, v = qkv_projection(x, *(w[...].astype(dt) for w in (self.wq, self.wk, self.wv)))
        q, k, v = (constrain(a, HEADS) for a in (rope(q, tables), rope(k, tables), v))
        o = causal_attention(q, k, v, segment_ids, impl=cfg.attention, block=cfg.attention_block)
        o = constrain(o, HEADS)
        return jnp.einsum("btnh,nhd->btd", o, self.wo[...].astype(dt))


class FeedForward(nnx.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, f, pd = cfg.dim, cfg.ffn_dim, cfg.param_dtype
        std, out_std = cfg.init_std, cfg.init_std / math.sqrt(2 * cfg.n_layers)
        self.w1 = _normal(rngs, (d, f), std, pd, ("embed", "mlp"))
        self.w2 = _normal(rngs, (f, d), std, pd, ("mlp", "embed"))
        self.w3 = _normal(rngs, (d, f), out_std, pd, ("embed", "mlp"))

    def __call__(self, x):
        dt = x.dtype
        return swiglu(x, self.w1[...].astype(dt), self.w3[...].astype(dt), self.w2[...].astype(dt))


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.attention_norm = RMSNorm(cfg)
        self.attention = Attention(cfg, rngs)
        self.ffn_norm = RMSNorm(cfg)
        self.feed_forward = FeedForward(cfg, rngs)

    def __call__(self, h, tables, segment_ids, dtype):
        # The residual stream stays float32 (as under PyTorch autocast); matmuls run in `dtype`.
        h = h + self.attention(self.attention_norm(h, dtype), tables, segment_ids).astype(h.dtype)
        h = constrain(h, RESIDUAL)
        return constrain(h + self.feed_forward(self.ffn_norm(h, dtype)).astype(h.dtype), RESIDUAL)


_REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.tok_embeddings = _normal(
            rngs, (cfg.vocab_size, cfg.dim), cfg.init_std, cfg.param_dtype, ("vocab", "embed"))
        self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg)

    def __call__(self, tokens, positions, segment_ids):
        cfg = self.cfg
        dtype = resolve_dtype(cfg.dtype)
        emb = self.tok_embeddings[...]
        h = constrain(jnp.take(emb, tokens, axis=0).astype(jnp.float32), RESIDUAL)
        length = max(cfg.max_seq_len, tokens.shape[1])
        tables = rope_tables(positions, cfg.head_dim, cfg.rope_theta, length)
        for layer in self.layers:
            if cfg.remat == "none":
                h = layer(h, tables, segment_ids, dtype)
            else:
                h = nnx.remat(lambda blk, *a: blk(*a, dtype), policy=_REMAT_POLICIES[cfg.remat])(
                    layer, h, tables, segment_ids)
        x = self.norm(h, dtype)
        return tied_logits(x, emb.astype(dtype))
