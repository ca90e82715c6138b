"""One sharded train step on 8 fake CPU devices equals the one-device step; shardings follow RULES."""

import importlib.util
import os

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from slmjax.train import sharding
from slmjax.train.mesh import make_mesh
from slmjax.train.step import init_train_state, make_eval_step, make_train_step

# Adam's first updates are about +-lr per element whatever the gradient's size, so float32
# reduction-order noise in a near-zero gradient can move a single parameter by up to 2 lr per update
# (seen: 1 element in 65536 off by 2.5% of lr, 1 in 262144 by 10.5%). Most elements agree to ~1e-7.
LR = 5e-4
ATOL = 0.1 * LR


def assert_params_close(params, ref, updates=2):
    """Equal within float32 noise, but for at most 1 element in 10,000 per tensor, which may sit
    anywhere Adam can put it (within 2 lr per update)."""
    def check(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        diff = np.abs(a - b)
        assert diff.max() <= 2 * LR * updates, diff.max()
        assert (diff > ATOL + 1e-4 * np.abs(b)).mean() <= 1e-4, (diff > ATOL + 1e-4 * np.abs(b)).sum()
    jax.tree.map(check, params, ref)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(arg="tiny"):
    spec = importlib.util.spec_from_file_location("train_config", os.path.join(ROOT, "configs/train.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def small_config(dim=128, heads=2, layers=1, vocab=64, seq=16, batch=8):
    c = load_config("tiny")
    c.model.update(dim=dim, n_heads=heads, n_layers=layers, vocab_size=vocab, attention_block=8)
    c.data.seq_len = seq
    c.train.update(batch_size=batch, steps=10, warmup_min=0, warmup_frac=0.0)
    return c


def make_batch(c, seed=0):
    rng = np.random.default_rng(seed)
    b, t, v = c.train.batch_size, c.data.seq_len, c.model.vocab_size
    tokens = rng.integers(0, v, (b, t + 1)).astype(np.int32)
    weights = (rng.random((b, t)) > 0.2).astype(np.float32)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": weights}


def run_two_steps(c, mesh):
    state = init_train_state(c, mesh, jax.random.key(0))
    step = make_train_step(c, mesh)
    losses = []
    for seed in (0, 1):
        batch = jax.device_put(make_batch(c, seed), sharding.batch_sharding(mesh))
        state, metrics = step(state, batch)
        losses += [float(metrics["loss"]), float(metrics["grad_norm"])]
    return losses, jax.device_get(state["params"]), state


def expected_spec(path, mesh_shape):
    """Hand-written expectation of the rules table for each parameter kind."""
    name = path[-1] if path[-1] != "scale" else "scale"
    f = "fsdp" if mesh_shape["fsdp"] > 1 else None
    t = "tensor" if mesh_shape["tensor"] > 1 else None
    return {"wq": P(f, t, None), "wk": P(f, t, None), "wv": P(f, t, None), "wo": P(t, None, f),
            "w1": P(f, t), "w3": P(f, t), "w2": P(t, f), "scale": P(None),
            "tok_embeddings": P(None, f)}[name]


def _norm(spec):  # P('fsdp', None) == P('fsdp') etc.: compare without trailing Nones, 1-axes dropped
    out = list(spec)
    while out and out[-1] is None:
        out.pop()
    return tuple(out)


@pytest.fixture(scope="module")
def single_device_result():
    c = small_config()
    mesh = make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    return run_two_steps(c, mesh)


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2)])
def test_sharded_step_equals_single_device(single_device_result, shape):
    assert jax.device_count() == 8
    c = small_config()
    c.mesh.update(data=shape[0], fsdp=shape[1], tensor=shape[2])
    mesh = make_mesh(c.mesh)
    losses, params, state = run_two_steps(c, mesh)
    ref_losses, ref_params, _ = single_device_result
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert_params_close(params, ref_params)
    mesh_shape = dict(zip(("data", "fsdp", "tensor"), shape))
    leaves = jax.tree_util.tree_flatten_with_path(state["params"])[0]
    for path, leaf in leaves:
        keys = tuple(getattr(k, "key", k) for k in path)
        assert _norm(leaf.sharding.spec) == _norm(expected_spec(keys, mesh_shape)), keys
    mu = state["opt_state"][1][0].mu  # clip_by_global_norm, then adamw's scale_by_adam
    for (path, p), m in zip(leaves, jax.tree.leaves(mu)):
        assert m.sharding == p.sharding


def test_tensor_parallel_8(single_device_result):
    c = small_config(dim=512, heads=8, layers=1)
    ref = run_two_steps(c, make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1]))
    c.mesh.update(data=1, fsdp=1, tensor=8)
    losses, params, state = run_two_steps(c, make_mesh(c.mesh))
    np.testing.assert_allclose(losses, ref[0], rtol=1e-5)
    assert_params_close(params, ref[1])
    wq = state["params"]["layers"]["0"]["attention"]["wq"]
    assert wq.sharding.spec == P(None, "tensor", None)
    assert wq.addressable_shards[0].data.shape == (512, 1, 64)


def test_eval_step_matches_train_loss():
    c = small_config()
    mesh = make_mesh(dict(data=2, fsdp=4, tensor=1))
    state = init_train_state(c, mesh, jax.random.key(0))
    batch = make_batch(c, 0)
    nll_sum, count = make_eval_step(c, mesh)(state["params"], batch)
    _, metrics = make_train_step(c, mesh)(state, jax.device_put(batch, sharding.batch_sharding(mesh)))
    assert float(count) == batch["weights"].sum()
    np.testing.assert_allclose(float(nll_sum) / float(count), float(metrics["loss"]), rtol=1e-6)
