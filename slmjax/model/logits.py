"""Output logits through the tied embedding: float32 logits from compute-dtype matmuls.

`einsum(..., preferred_element_type=float32)` keeps the logits in float32, but autodiff then feeds
its float32 cotangent to the two backward matmuls, which run in float32 (on a GPU, off the
bfloat16 tensor cores). In a reduced compute dtype the cotangent is rounded to that dtype first,
as under PyTorch autocast, and both gradients accumulate in float32. In float32 this is autodiff's
program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def tied_logits(x, emb):
    """x [B, T, D] and the embedding emb [V, D], both in the compute dtype -> float32 [B, T, V]."""
    if x.dtype == jnp.float32:
        return _logits(x, emb)
    return _reduced_logits(x, emb)


def _logits(x, emb):
    return jnp.einsum("btd,vd->btv", x, emb, preferred_element_type=jnp.float32)


@jax.custom_vjp
def _reduced_logits(x, emb):
    return _logits(x, emb)


def _forward(x, emb):
    return _logits(x, emb), (x, emb)


def _backward(res, g):
    x, emb = res
    g = g.astype(x.dtype)
    dx = jnp.einsum("btv,vd->btd", g, emb, preferred_element_type=jnp.float32)
    demb = jnp.einsum("btv,btd->vd", g, x, preferred_element_type=jnp.float32)
    return dx.astype(x.dtype), demb.astype(emb.dtype)


_reduced_logits.defvjp(_forward, _backward)
