"""Gradient accumulation over micro-batches equals the full-batch gradient."""

import jax
import jax.numpy as jnp
import numpy as np

from slmjax.model import forward, init_params
from slmjax.train import sharding
from slmjax.train.mesh import make_mesh
from slmjax.train.step import init_train_state, loss_and_grads, make_train_step
from slmjax.train.validate import model_config
from test_train_step_sharded import make_batch, small_config


def full_batch_loss(cfg, params, batch):
    """Plainly written weighted mean token NLL."""
    logits = forward(cfg, params, batch["inputs"])
    logz = jax.scipy.special.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, batch["targets"][..., None], axis=-1)[..., 0]
    return jnp.sum((logz - picked) * batch["weights"]) / jnp.sum(batch["weights"])


def test_accumulated_grads_equal_full_batch():
    c = small_config(batch=16)
    cfg = model_config(c)
    params = init_params(cfg, jax.random.key(3))
    batch = {k: jnp.asarray(v) for k, v in make_batch(c, 5).items()}
    ref_loss, ref_grads = jax.jit(jax.value_and_grad(lambda p: full_batch_loss(cfg, p, batch)))(params)
    for m in (1, 4):
        loss, grads = jax.jit(lambda p, b: loss_and_grads(cfg, p, b, m))(params, batch)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
        # float32 sums in another order: agree to 1e-5 of each tensor's largest entry
        jax.tree.map(lambda a, b: np.testing.assert_allclose(
            a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max())), grads, ref_grads)


def test_train_step_with_micro_batches_on_a_mesh():
    c = small_config(batch=16)
    mesh = make_mesh(dict(data=2, fsdp=2, tensor=1), devices=jax.devices()[:4])
    batch = jax.device_put(make_batch(c, 5), sharding.batch_sharding(mesh))
    results = []
    for m in (1, 4):
        c.train.micro_batches = m
        state = init_train_state(c, mesh, jax.random.key(0))
        state, metrics = make_train_step(c, mesh)(state, batch)
        results.append((metrics, jax.device_get(state["params"])))
    (m1, p1), (m4, p4) = results
    for k in ("loss", "grad_norm", "lr"):
        np.testing.assert_allclose(m4[k], m1[k], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5), p4, p1)


def test_bfloat16_params_keep_their_dtypes_and_float32_sums():
    """param_dtype=bfloat16: the step's state keeps its dtypes (float32 gradients used to turn the
    AdamW moments float32 after the first update, so the step recompiled and the state no longer
    matched a checkpoint's), and 16 micro-batches are summed in float32: within one bfloat16
    rounding (2^-8, in norm) of the float32 full-batch gradient, where bfloat16 sums were 0.0054."""
    c = small_config(batch=16)
    c.model.param_dtype = "bfloat16"
    cfg = model_config(c)
    params = init_params(cfg, jax.random.key(3))
    batch = {k: jnp.asarray(v) for k, v in make_batch(c, 5).items()}
    p32 = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    cfg32 = model_config(small_config(batch=16))
    _, ref = jax.jit(jax.value_and_grad(lambda p: full_batch_loss(cfg32, p, batch)))(p32)
    _, grads = jax.jit(lambda p, b: loss_and_grads(cfg, p, b, 16))(params, batch)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref)):
        assert g.dtype == jnp.bfloat16
        assert np.linalg.norm(np.asarray(g, np.float32) - r) <= 2.0 ** -8 * np.linalg.norm(r)
    mesh = make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    for m in (1, 4):
        c.train.micro_batches = m
        state = init_train_state(c, mesh, jax.random.key(0))
        dtypes = [x.dtype for x in jax.tree.leaves(state)]
        state, _ = make_train_step(c, mesh)(state, jax.device_put(make_batch(c, 5),
                                                                  sharding.batch_sharding(mesh)))
        assert [x.dtype for x in jax.tree.leaves(state)] == dtypes
