"""Train state, the jitted sharded train step (with gradient accumulation) and the eval step.

Batch: dict of [B, T] arrays: `inputs` int32, `targets` int32, optional `weights` float32
(0 = not a target), `positions` int32 (RoPE), `segment_ids` int32 (packed sequences).
State: dict(step=int32 scalar, params=..., opt_state=...), sharded by the rules table.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from slmjax.model import abstract_params, forward
from slmjax.model.functional import build_params
from slmjax.train import sharding
from slmjax.train.optim import make_optimizer, schedule
from slmjax.train.validate import model_config


def nll_sums(cfg, params, batch):
    """(sum of weighted token NLLs, sum of weights) of a batch, in float32."""
    logits = forward(cfg, params, batch["inputs"], batch.get("positions"), batch.get("segment_ids"))
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, batch["targets"][..., None].astype(jnp.int32), axis=-1)[..., 0]
    w = batch.get("weights")
    w = jnp.ones_like(nll) if w is None else w.astype(jnp.float32)
    return jnp.sum(nll * w), jnp.sum(w)


def state_shardings(config, mesh) -> dict:
    """NamedShardings of the train state (same tree as init_train_state's result)."""
    cfg = model_config(config)
    tx = make_optimizer(config)
    p_sh = sharding.param_shardings(cfg, mesh)
    abstract_opt = jax.eval_shape(tx.init, abstract_params(cfg))
    return {"step": NamedSharding(mesh, P()), "params": p_sh,
            "opt_state": sharding.opt_state_shardings(tx, abstract_opt, p_sh, mesh)}


def _init_state(config, key):
    params = build_params(model_config(config), key)
    return {"step": jnp.zeros((), jnp.int32), "params": params,
            "opt_state": make_optimizer(config).init(params)}


def abstract_train_state(config, mesh) -> dict:
    """The train state as jax.ShapeDtypeStruct with shardings on `mesh` (an Orbax restore target)."""
    shapes = jax.eval_shape(lambda: _init_state(config, jax.random.key(0)))
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        shapes, state_shardings(config, mesh))


def init_train_state(config, mesh, key) -> dict:
    """Params (the paper's init from `key`) and AdamW state, created sharded on `mesh`."""
    with jax.set_mesh(mesh):
        return jax.jit(lambda k: _init_state(config, k), out_shardings=state_shardings(config, mesh))(key)


def _split_micro(x, m: int, mesh):
    """[B, ...] -> [m, B/m, ...]; micro-batch j takes rows j, j+m, ... so each shard splits evenly."""
    x = x.reshape(x.shape[0] // m, m, *x.shape[1:]).swapaxes(0, 1)
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(None, sharding.BATCH_AXES)))


def loss_and_grads(cfg, params, batch, micro_batches: int = 1, mesh=None):
    """(weighted mean NLL, its gradient) over the batch, accumulated over `micro_batches` slices.

    Slices return gradient *sums* that are added up and divided once by the total weight, so the
    result equals the full-batch gradient whatever the split.
    """
    sums_and_grads = jax.value_and_grad(lambda p, b: nll_sums(cfg, p, b), has_aux=True)
    if micro_batches == 1:
        (nll, count), grads = sums_and_grads(params, batch)
    else:
        def body(carry, mb):
            (nll_sum, count), g = sums_and_grads(params, mb)
            g_acc, n_acc, c_acc = carry
            g_acc = jax.tree.map(lambda a, x: a + x.astype(jnp.float32), g_acc, g)
            return (g_acc, n_acc + nll_sum, c_acc + count), None

        micro = jax.tree.map(lambda x: _split_micro(x, micro_batches, mesh), batch)
        # Sums in float32 whatever the parameters' dtype (bfloat16 sums lose ~m ulps).
        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        zero = jnp.zeros((), jnp.float32)
        (grads, nll, count), _ = jax.lax.scan(body, (zeros, zero, zero), micro)
    count = jnp.maximum(count, 1.0)
    return nll / count, jax.tree.map(lambda g, p: (g / count).astype(p.dtype), grads, params)


def make_train_step(config, mesh):
    """Jitted `step(state, batch) -> (state, metrics)`; state donated; metrics: loss, grad_norm, lr.

    The loss is the weighted mean token NLL over the whole batch, accumulated over
    train.micro_batches slices (same update as one pass).
    """
    cfg = model_config(config)
    tx, lr_fn = make_optimizer(config), schedule(config)
    m = int(config.train.micro_batches)

    def step(state, batch):
        params = state["params"]
        with sharding.model_context(mesh):
            loss, grads = loss_and_grads(cfg, params, batch, m, mesh)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates),
                     "opt_state": opt_state}
        metrics = {"loss": loss, "grad_norm": grad_norm, "lr": lr_fn(state["step"])}
        return new_state, metrics

    state_sh = state_shardings(config, mesh)
    replicated = NamedSharding(mesh, P())
    return jax.jit(step, in_shardings=(state_sh, sharding.batch_sharding(mesh)),
                   out_shardings=(state_sh, replicated), donate_argnums=(0,))


def make_eval_step(config, mesh):
    """Jitted `eval(params, batch) -> (sum of weighted NLL, sum of weights)` (float32 scalars)."""
    cfg = model_config(config)
    replicated = NamedSharding(mesh, P())

    def eval_step(params, batch):
        with sharding.model_context(mesh):
            return nll_sums(cfg, params, batch)

    return jax.jit(eval_step,
                   in_shardings=(sharding.param_shardings(cfg, mesh), sharding.batch_sharding(mesh)),
                   out_shardings=(replicated, replicated))
