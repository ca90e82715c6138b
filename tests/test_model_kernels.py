"""The model's attention kernels (CPU blockwise; TPU splash, run here in Pallas's interpreter) and
hand-written backward passes (SwiGLU, q/k/v projections, tied logits) against PyTorch float64
autograd or float64 NumPy."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slmjax.model.attention import causal_attention
from slmjax.model.blockwise import blockwise_causal_attention
from slmjax.model.logits import tied_logits
from slmjax.model.qkv import qkv_projection
from slmjax.model.splash import splash_causal_attention, tiling
from slmjax.model.swiglu import swiglu

B, N, T, H = 2, 3, 37, 16
SEGMENTS = np.repeat(np.array([[0, 1, 2], [5, 5, 7]]), [10, 20, 7], axis=1)


def _inputs(seed=0):
    """q, k, v and a cotangent [B, T, N, H] (the model's layout)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(B, T, N, H)).astype(np.float32) for _ in range(4)]


def torch_reference(q, k, v, w, segment_ids):
    """(output, dq, dk, dv) [B, T, N, H] of sum(attention * w), by float64 autograd of a plain
    masked softmax over heads-major [B, N, T, H] tensors."""
    torch = pytest.importorskip("torch")
    q, k, v, w = (x.transpose(0, 2, 1, 3) for x in (q, k, v, w))
    q, k, v = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (q, k, v))
    t = q.shape[2]
    mask = torch.ones(t, t, dtype=torch.bool).tril()[None, None]
    if segment_ids is not None:
        seg = torch.tensor(segment_ids)
        mask = mask & (seg[:, None, :, None] == seg[:, None, None, :])
    scores = (q @ k.transpose(-1, -2)) / np.sqrt(q.shape[-1])
    out = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v
    (out * torch.tensor(w, dtype=torch.float64)).sum().backward()
    return [x.detach().numpy().transpose(0, 2, 1, 3) for x in (out, q.grad, k.grad, v.grad)]


def assert_matches_torch(kernel, inputs, segments, block):
    """kernel(q, k, v, segment_ids, block)'s output and its gradients of sum(out * w) equal torch
    float64 autograd's within 1e-5 of each one's largest magnitude."""
    q, k, v, w = inputs
    seg = SEGMENTS if segments else None
    ref = torch_reference(q, k, v, w, seg)
    seg_j = None if seg is None else jnp.asarray(seg)

    def loss(q, k, v):
        return jnp.sum(kernel(q, k, v, seg_j, block) * w)

    out = jax.jit(lambda q, k, v: kernel(q, k, v, seg_j, block))(q, k, v)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    for ours, theirs in zip([out, *grads], ref):
        scale = np.abs(theirs).max()
        assert np.abs(np.asarray(ours, np.float64) - theirs).max() < 1e-5 * scale


@pytest.mark.torch
@pytest.mark.parametrize("segments", [False, True])
@pytest.mark.parametrize("block", [8, 16, 37, 64])
@pytest.mark.parametrize("rows_per_step", [2048, 1])  # both sequences per loop step / one
def test_output_and_gradients_match_torch_float64(segments, block, rows_per_step, monkeypatch):
    from slmjax.model import blockwise

    monkeypatch.setattr(blockwise, "_ROWS_PER_STEP", rows_per_step)
    assert blockwise._group(B, T) == (B if rows_per_step > B * T else 1)
    assert_matches_torch(blockwise_causal_attention, _inputs(), segments, block)


@pytest.mark.torch
@pytest.mark.parametrize("segments", [False, True])
@pytest.mark.parametrize("block", [128, 512])
def test_splash_output_and_gradients_match_torch_float64(segments, block):
    """TPU's kernel, interpreted: T = 37 is padded to one 128-row tile (the padded keys lie after
    every real query; the padded queries are cut off), q is pre-scaled by 1/sqrt(H)."""
    assert_matches_torch(splash_causal_attention, _inputs(3), segments, block)


def test_splash_tiles():
    """(padded length, block): a multiple of 128, and the largest block <= the asked one dividing it."""
    assert tiling(2050, 512) == (2176, 128)   # the paper's length: 17 tiles of 128
    assert tiling(2048, 512) == (2048, 512)
    assert tiling(1536, 1024) == (1536, 512)
    assert tiling(37, 512) == (128, 128)
    assert tiling(640, 100) == (640, 128)
    # Only multiples of 128: the kernel refuses a block of 192 or 320 even where it divides.
    assert tiling(384, 192) == (384, 128)
    assert tiling(640, 320) == (640, 128)
    assert tiling(768, 384) == (768, 384)
    for t, block in [(1, 1), (128, 512), (300, 96), (1000, 700), (2050, 1000)]:
        padded, b = tiling(t, block)
        assert padded >= t and padded % b == 0 and b % 128 == 0


def test_splash_runs_with_a_block_that_is_not_a_multiple_of_128():
    q = jnp.ones((1, 384, 1, 16))
    assert splash_causal_attention(q, q, q, None, 192).shape == q.shape


@pytest.mark.torch
@pytest.mark.parametrize("b, t", [(1, 1), (1, 128), (2, 256)])
def test_splash_edge_lengths_match_torch_float64(b, t):
    """One token (padded to 128), and lengths that need no padding (one tile; two tiles of 128)."""
    rng = np.random.default_rng(6)
    q, k, v, w = (rng.normal(size=(b, t, N, H)).astype(np.float32) for _ in range(4))
    ref = torch_reference(q, k, v, w, None)

    def loss(q, k, v):
        return jnp.sum(splash_causal_attention(q, k, v, None, 128) * w)

    out = splash_causal_attention(q, k, v, None, 128)
    grads = jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
    for ours, theirs in zip([out, *grads], ref):
        assert ours.shape == theirs.shape
        assert np.abs(np.asarray(ours, np.float64) - theirs).max() <= 1e-5 * max(np.abs(theirs).max(), 1)


# Row 0: one-token first and last segments; row 1: ids 3 and 4 each in two separate runs.
EDGE_SEGMENTS = np.array([[1] + [2] * 35 + [3],
                          [3] * 9 + [4] * 1 + [3] * 12 + [4] * 15])


def test_kernels_agree_on_segment_ids_by_equality():
    """Splash, blockwise and the XLA path all mask by id equality: a token attends to earlier
    tokens of its id even across another segment's run (row 1), unlike ids relabelled per run."""
    q, k, v, _ = _inputs(7)
    seg = jnp.asarray(EDGE_SEGMENTS)
    ref = causal_attention(q, k, v, seg, impl="xla")
    for impl in ("blockwise", "splash"):
        ours = causal_attention(q, k, v, seg, impl=impl, block=16 if impl == "blockwise" else 128)
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5, atol=1e-5)
    runs = jnp.asarray(np.cumsum(np.diff(EDGE_SEGMENTS, prepend=-1, axis=1) != 0, axis=1))
    by_run = causal_attention(q, k, v, runs, impl="xla")
    assert np.allclose(by_run[0], ref[0]) and not np.allclose(by_run[1], ref[1])


def test_splash_bfloat16_stays_close_to_float32():
    """bfloat16 q, k, v (with segments): bfloat16 output and gradients within bfloat16 rounding of
    the float32 blockwise kernel's on the same (rounded) inputs."""
    q, k, v, w = _inputs(8)
    seg = jnp.asarray(EDGE_SEGMENTS)
    bf = [jnp.asarray(x, jnp.bfloat16) for x in (q, k, v)]
    f32 = [x.astype(jnp.float32) for x in bf]

    def run(kernel, block, args):
        def loss(q, k, v):
            return jnp.sum(kernel(q, k, v, seg, block).astype(jnp.float32) * w)
        return [kernel(*args, seg, block), *jax.grad(loss, argnums=(0, 1, 2))(*args)]

    ours = run(splash_causal_attention, 128, bf)
    ref = run(blockwise_causal_attention, 16, f32)
    for a, r in zip(ours, ref):
        assert a.dtype == jnp.bfloat16
        r = np.asarray(r, np.float64)
        assert np.abs(np.asarray(a, np.float64) - r).max() < 0.02 * np.abs(r).max()


@pytest.mark.parametrize("backend, dtype, kernel", [
    ("cpu", jnp.float32, "blockwise"), ("cpu", jnp.bfloat16, "blockwise"),
    ("gpu", jnp.float32, "xla"), ("gpu", jnp.bfloat16, "cudnn"), ("gpu", jnp.float16, "cudnn"),
    ("tpu", jnp.float32, "splash"), ("tpu", jnp.bfloat16, "splash")])
def test_auto_resolves_per_traced_platform_and_dtype(backend, dtype, kernel):
    from slmjax.model import platform
    from slmjax.model.attention import resolve

    with platform.target(backend):
        assert resolve("auto", dtype) == kernel
        assert resolve("auto", jnp.dtype(dtype)) == kernel
        for impl in ("xla", "cudnn", "blockwise", "splash"):
            assert resolve(impl, dtype) == impl


def test_dispatch_and_bfloat16_inputs_stay_close():
    q, k, v, _ = _inputs(1)
    ref = causal_attention(q, k, v, jnp.asarray(SEGMENTS), impl="xla")
    ours = causal_attention(*(jnp.asarray(x, jnp.bfloat16) for x in (q, k, v)), jnp.asarray(SEGMENTS),
                            impl="blockwise", block=16)
    assert ours.dtype == jnp.bfloat16
    assert float(jnp.max(jnp.abs(ours.astype(jnp.float32) - ref))) < 0.05


def test_backward_does_not_keep_the_probabilities():
    """The saved residuals are the output and the row log-sum-exp, not B*N*T*T probabilities:
    the compiled gradient needs far less temporary memory than autodiff of plain attention."""
    shape = (2, 512, 4, 32)
    args = [jax.ShapeDtypeStruct(shape, jnp.float32)] * 3

    def temp_bytes(impl):
        def loss(q, k, v):
            return jnp.sum(causal_attention(q, k, v, impl=impl, block=128) ** 2)
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*args).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    probabilities = 2 * 4 * 512 * 512 * 4  # one float32 [B,N,T,T] array: 8 MiB
    ours, plain = temp_bytes("blockwise"), temp_bytes("xla")  # measured: 6.2 MiB and 32 MiB
    assert ours < probabilities < plain / 2


@pytest.mark.torch
def test_swiglu_gradients_match_torch_float64():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    d, f = 24, 40
    arrays = [rng.normal(size=(2, 7, d)), rng.normal(0, d ** -0.5, (d, f)),
              rng.normal(0, d ** -0.5, (d, f)), rng.normal(0, f ** -0.5, (f, d)), rng.normal(size=(2, 7, d))]
    x, w1, w3, w2, w = (a.astype(np.float32) for a in arrays)
    tx, t1, t3, t2 = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w1, w3, w2))
    out = (torch.nn.functional.silu(tx @ t1) * (tx @ t3)) @ t2
    (out * torch.tensor(w, dtype=torch.float64)).sum().backward()
    ref = [out.detach().numpy()] + [t.grad.numpy() for t in (tx, t1, t3, t2)]
    ours = [swiglu(x, w1, w3, w2)] + list(jax.grad(
        lambda *a: jnp.sum(swiglu(*a) * w), argnums=(0, 1, 2, 3))(x, w1, w3, w2))
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        assert np.abs(np.asarray(a, np.float64) - b).max() < 1e-5 * np.abs(b).max()
    # bfloat16 inputs: same dtypes back, close to the float64 gradients.
    bf = jax.grad(lambda *a: jnp.sum(swiglu(*a).astype(jnp.float32) * w), argnums=(0, 1, 2, 3))(
        *(jnp.asarray(a, jnp.bfloat16) for a in (x, w1, w3, w2)))
    for a, b in zip(bf, ref[1:]):
        assert a.dtype == jnp.bfloat16
        assert np.abs(np.asarray(a, np.float64) - b).max() < 0.05 * np.abs(b).max()


def test_qkv_projection_gradients_match_float64():
    """q, k, v = x W and their hand-written backward against float64 NumPy: dW = x^T g summed over
    batch and time, dx = sum of g W^T."""
    rng = np.random.default_rng(4)
    b, t, d, n, h = 2, 7, 12, 3, 4
    x = rng.normal(size=(b, t, d))
    ws = [rng.normal(0, d ** -0.5, (d, n, h)) for _ in range(3)]
    cots = [rng.normal(size=(b, t, n, h)) for _ in range(3)]
    ref_out = [np.einsum("btd,dnh->btnh", x, w) for w in ws]
    ref_dw = [np.einsum("btd,btnh->dnh", x, g) for g in cots]
    ref_dx = sum(np.einsum("btnh,dnh->btd", g, w) for g, w in zip(cots, ws))
    f32 = [jnp.asarray(a, jnp.float32) for a in (x, *ws)]

    def loss(*args):
        return sum(jnp.sum(o * g) for o, g in zip(qkv_projection(*args), cots))

    ours = qkv_projection(*f32)
    grads = jax.grad(loss, argnums=(0, 1, 2, 3))(*f32)
    for a, r in zip([*ours, *grads], [*ref_out, ref_dx, *ref_dw]):
        assert a.shape == r.shape and a.dtype == jnp.float32
        assert np.abs(np.asarray(a, np.float64) - r).max() < 1e-5 * np.abs(r).max()
    bf = jax.grad(loss, argnums=(0, 1, 2, 3))(*(a.astype(jnp.bfloat16) for a in f32))
    for a, r in zip(bf, [ref_dx, *ref_dw]):
        assert a.dtype == jnp.bfloat16
        assert np.abs(np.asarray(a, np.float64) - r).max() < 0.05 * np.abs(r).max()
    # On the CPU the transposed x is one shared copy (kept by an optimization barrier).
    assert "optimization_barrier" in str(jax.make_jaxpr(jax.grad(loss))(*f32))


def test_tied_logits_and_gradients_match_float64():
    """Float32 logits x E^T, dx = g E and dE = g^T x summed over batch and time, in float32 and from
    bfloat16 inputs (whose backward rounds the float32 cotangent to bfloat16)."""
    rng = np.random.default_rng(5)
    b, t, d, v = 2, 9, 16, 11
    x, emb, g = rng.normal(size=(b, t, d)), rng.normal(0, d ** -0.5, (v, d)), rng.normal(size=(b, t, v))
    ref = [np.einsum("btd,vd->btv", x, emb), np.einsum("btv,vd->btd", g, emb),
           np.einsum("btv,btd->vd", g, x)]

    def logits_and_grads(dtype):
        args = [jnp.asarray(a, dtype) for a in (x, emb)]
        out, pull = jax.vjp(tied_logits, *args)
        return [out, *pull(jnp.asarray(g, jnp.float32))]

    for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 0.02)):
        ours = logits_and_grads(dtype)
        assert [a.dtype for a in ours] == [jnp.float32, dtype, dtype]
        for a, r in zip(ours, ref):
            assert np.abs(np.asarray(a, np.float64) - r).max() < tol * np.abs(r).max()
    # The bfloat16 backward's matmuls take bfloat16 operands only.
    hlo = jax.jit(lambda: logits_and_grads(jnp.bfloat16)).lower().as_text()
    operands = re.findall(r"dot_general .*: \(tensor<(?:\d+x)*(\w+)>, tensor<(?:\d+x)*(\w+)>\)", hlo)
    assert operands == [("bf16", "bf16")] * 3


@pytest.mark.parametrize("kernel", [blockwise_causal_attention, splash_causal_attention])
def test_under_a_mesh_each_device_loops_over_its_own_sequences_and_heads(kernel):
    """With a mesh and the rules in context the attention runs in shard_map (no gather of the
    sharded batch), with the same output and gradients as without a mesh."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    from slmjax.train.sharding import axis_rules

    if jax.device_count() < 4:
        pytest.skip("needs 4 devices")
    mesh = jax.make_mesh((2, 1, 2), ("data", "fsdp", "tensor"), devices=jax.devices()[:4],
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)  # as slmjax's meshes
    q, k, v, w = _inputs(2)
    q, k, v, w = (np.concatenate([x, x[:, :, :1]], axis=2) for x in (q, k, v, w))  # 4 heads
    seg = jnp.asarray(SEGMENTS)

    def loss(q, k, v):
        return jnp.sum(kernel(q, k, v, seg, 16 if kernel is blockwise_causal_attention else 128) * w)

    plain = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(q, k, v)
    sharded = NamedSharding(mesh, P("data", None, "tensor"))
    with jax.set_mesh(mesh), axis_rules():
        args = [jax.device_put(x, sharded) for x in (q, k, v)]
        fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
        assert "shard_map" in str(jax.make_jaxpr(fn)(*args))
        meshed = fn(*args)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(meshed)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)
