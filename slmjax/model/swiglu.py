"""SwiGLU feed-forward, w2(silu(x w1) * (x w3)), with a hand-written backward pass.

Autodiff of the three matmuls gives the same numbers but a slower program on the CPU. Here the
backward is written out: six contractions (the weight gradients as einsums over all leading axes)
and the gate's derivative in float32, from the saved x w1 and x w3. Measured at s20m shapes
(8,200 tokens x 512 -> 1536) on a 2-core CPU: forward + backward 761 -> 576-615 ms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def swiglu(x, w1, w3, w2):
    """x [..., D] -> [..., D] with w1, w3 [D, F] and w2 [F, D], all in x's dtype."""
    return _forward(x, w1, w3, w2)[0]


def _forward(x, w1, w3, w2):
    h1, h3 = x @ w1, x @ w3
    return (jax.nn.silu(h1) * h3) @ w2, (x, w1, w3, w2, h1, h3)


def _backward(res, dy):
    x, w1, w3, w2, h1, h3 = res
    f1, f3 = h1.astype(jnp.float32), h3.astype(jnp.float32)
    sig = jax.nn.sigmoid(f1)
    silu = f1 * sig
    da = (dy @ w2.T).astype(jnp.float32)
    dh1 = (da * f3 * sig * (1.0 + f1 * (1.0 - sig))).astype(x.dtype)  # d silu(h) / dh
    dh3 = (da * silu).astype(x.dtype)
    gate = (silu * f3).astype(x.dtype)
    dx = dh1 @ w1.T + dh3 @ w3.T
    dw1 = jnp.einsum("...d,...f->df", x, dh1)
    dw3 = jnp.einsum("...d,...f->df", x, dh3)
    dw2 = jnp.einsum("...f,...d->fd", gate, dy)
    return dx, dw1.astype(w1.dtype), dw3.astype(w3.dtype), dw2.astype(w2.dtype)


swiglu.defvjp(_forward, _backward)
