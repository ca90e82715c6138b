"""AdamW and the learning-rate schedule of the paper.

Linear warm-up from 0 to `lr` over W = min(warmup_max, max(warmup_min, warmup_frac * steps))
updates, then a half-cosine from `lr` to `min_lr`, reached exactly on the final update
(update index steps - 1). Update k (0-based) uses lr(k). A run shorter than its warm-up rule keeps
one cosine interval (W <= steps - 2), so that its final update still runs at `min_lr`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from slmjax.train.validate import total_steps


def warmup_steps(config, steps: int | None = None) -> int:
    steps = total_steps(config) if steps is None else steps
    t = config.train
    w = min(int(t.warmup_max), max(int(t.warmup_min), int(t.warmup_frac * steps)))
    return max(0, min(w, steps - 2))


def lr_at(config, k: int, steps: int | None = None) -> float:
    """Learning rate of update k, in plain Python (for logs, tests and plans)."""
    steps = total_steps(config) if steps is None else steps
    w, peak, low = warmup_steps(config, steps), config.train.lr, config.train.min_lr
    if k < w:
        return peak * k / w
    span = steps - 1 - w  # 0 only for a one-update run, whose one update is the final one
    r = min(1.0, (k - w) / span) if span > 0 else 1.0
    return low + 0.5 * (1.0 + math.cos(math.pi * r)) * (peak - low)


def schedule(config, steps: int | None = None):
    """The schedule as an optax-style function of the update count (traceable)."""
    steps = total_steps(config) if steps is None else steps
    w, peak, low = warmup_steps(config, steps), config.train.lr, config.train.min_lr

    def fn(count):
        k = jnp.asarray(count, jnp.float32)
        warm = peak * k / max(w, 1)
        span = steps - 1 - w  # 0 only for a one-update run, whose one update is the final one
        r = jnp.clip((k - w) / span, 0.0, 1.0) if span > 0 else jnp.ones_like(k)
        cos = low + 0.5 * (1.0 + jnp.cos(jnp.pi * r)) * (peak - low)
        return jnp.where(k < w, warm, cos)

    return fn


def decay_mask(params):
    """Weight decay on parameters with ndim >= 2 only (not on RMSNorm scales)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(config, steps: int | None = None) -> optax.GradientTransformation:
    """Global-norm clip, then AdamW (b1, b2, eps, decoupled weight decay on ndim >= 2)."""
    t = config.train
    return optax.chain(
        optax.clip_by_global_norm(t.clip_norm),
        optax.adamw(schedule(config, steps), b1=t.b1, b2=t.b2, eps=t.eps,
                    weight_decay=t.weight_decay, mask=decay_mask),
    )
