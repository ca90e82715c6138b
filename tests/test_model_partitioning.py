"""The activations' sharding constraints and per-device attention (slmjax.model.partitioning) where
dimensions do not divide the mesh, and the traced-for platform (slmjax.model.platform)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from slmjax.model import platform
from slmjax.model.partitioning import HEADS, RESIDUAL, constrain, logical_to_spec, per_device_heads
from slmjax.train.sharding import RULES, axis_rules


def _mesh(shape, names=("data", "fsdp", "tensor")):
    if jax.device_count() < np.prod(shape):
        pytest.skip(f"needs {np.prod(shape)} devices")
    return jax.make_mesh(shape, names, devices=jax.devices()[:np.prod(shape)],
                         axis_types=(jax.sharding.AxisType.Auto,) * len(shape))


def test_specs_replicate_what_does_not_divide():
    mesh = _mesh((2, 2, 2))
    assert logical_to_spec(HEADS, (8, 5, 4, 3), mesh, RULES) == P(("data", "fsdp"), None, "tensor", None)
    assert logical_to_spec(HEADS, (3, 5, 3, 3), mesh, RULES) == P(None, None, None, None)
    assert logical_to_spec(RESIDUAL, (6, 5, 4), mesh, RULES) == P(None, None, None)
    assert logical_to_spec(HEADS, (8, 5, 4, 3), _mesh((4, 1, 2)), RULES) == P("data", None, "tensor", None)


def test_specs_under_a_mesh_without_some_axes():
    """A mesh lacking an axis the rules name (a data-only mesh): that axis shards nothing."""
    mesh = _mesh((4,), ("data",))
    assert logical_to_spec(HEADS, (8, 5, 4, 3), mesh, RULES) == P("data", None, None, None)
    with jax.set_mesh(mesh), axis_rules():
        out = jax.jit(lambda x: constrain(x, RESIDUAL) * 2)(jnp.ones((8, 5, 4)))
    assert out.sharding.spec[0] == "data"


def test_constrain_is_the_identity_without_a_mesh_or_rules():
    x = jnp.arange(24.0).reshape(2, 3, 4)
    assert constrain(x, RESIDUAL) is x
    with axis_rules():
        assert constrain(x, RESIDUAL) is x
    with jax.set_mesh(_mesh((2, 2, 2))):
        assert constrain(x, RESIDUAL) is x  # no logical-axis rules
    with jax.set_mesh(_mesh((1, 1, 1))), axis_rules():
        assert constrain(x, RESIDUAL) is x  # one device


@pytest.mark.parametrize("b, n", [(3, 3), (4, 3), (3, 4), (8, 4)])
def test_batches_and_heads_that_do_not_divide_the_mesh(b, n):
    """Batch 3 on 8 devices, 3 heads over 2 tensor shards: replicated, with the same numbers."""
    mesh = _mesh((2, 2, 2))
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(b, 5, n, 4)), jnp.float32) for _ in range(3))
    seg = jnp.asarray(rng.integers(0, 2, size=(b, 5)), jnp.int32)

    def fn(q, k, v, s):
        x = q * k + v
        return x if s is None else x * s[:, :, None, None]

    def run(seg):
        return jax.jit(lambda q, k, v: constrain(per_device_heads(fn, q, k, v, seg), HEADS))(q, k, v)

    plain = [run(None), run(seg)]
    with jax.set_mesh(mesh), axis_rules():
        meshed = [run(None), run(seg)]
    for a, r in zip(meshed, plain):
        np.testing.assert_allclose(np.asarray(a), np.asarray(r))


def test_inside_shard_map_the_model_is_left_per_device():
    """Model code run inside shard_map (its mesh axes are manual there) adds no constraint and no
    nested shard_map."""
    mesh = _mesh((2, 2, 2))
    x = jnp.arange(8 * 3 * 4 * 2, dtype=jnp.float32).reshape(8, 3, 4, 2)

    def local(x):
        y = per_device_heads(lambda q, k, v, s: q * k + v, x, x, x)
        return constrain(y, HEADS)

    with jax.set_mesh(mesh), axis_rules():
        spec = P(("data", "fsdp"), None, "tensor", None)
        out = jax.jit(jax.shard_map(local, in_specs=spec, out_specs=spec))(x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(x * x + x))


def test_target_nests_and_restores_on_errors():
    native = jax.default_backend()
    with pytest.raises(RuntimeError):
        with platform.target("tpu"):
            assert platform.backend() == "tpu"
            with platform.target("gpu"):
                assert platform.backend() == "gpu"
            assert platform.backend() == "tpu"
            raise RuntimeError
    assert platform.backend() == native
    with pytest.raises(ValueError, match="unknown platform"):
        with platform.target("TPU"):  # would have traced the XLA attention for a TPU
            pass
    assert platform.backend() == native
