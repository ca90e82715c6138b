"""The bfloat16 training step as a GPU would get it, lowered for CUDA on this CPU-only machine.

No GPU is needed to see the program an H100 compiles: the step is traced as a GPU run traces it
(slmjax.train.trace: dtype and attention "auto") and lowered with `lowering_platforms=("cuda",)`.
What it must hold for the MFU goal: cuDNN's flash attention forward and backward in every layer
(causal, no score matrix materialised), and every matmul on bfloat16 operands (tensor cores), the
tied output projection's backward included. jax asks the installed
cuDNN for its version while tracing; with no CUDA here, those checks are answered as an H100 with
cuDNN 9.10 would answer them (slmjax.train.gpu_topology.answer_as).
"""

import re
from collections import Counter

import jax
import pytest

from slmjax.train import gpu_topology
from slmjax.train.trace import trace_step
from test_train_step_sharded import load_config

T = 2050


@pytest.fixture
def as_h100():
    with gpu_topology.answer_as(gpu_topology.GPUS["h100"].description):
        yield


def cuda_program(size, mesh_shape, batch=8, packed=False) -> str:
    """The config's step as a GPU run traces it (dtype and attention left at "auto"), lowered for
    CUDA on the batch the loop feeds."""
    c = load_config(size)
    c.data.mode = "packed" if packed else "windows"
    c.train.batch_size = batch
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = mesh_shape
    n = mesh_shape[0] * mesh_shape[1] * mesh_shape[2]
    traced = trace_step(c, jax.devices()[:n], "gpu")
    return traced.lower(lowering_platforms=("cuda",)).as_text()


def dot_operand_types(text) -> Counter:
    """Element types of each dot_general's two operands."""
    sig = re.findall(r"stablehlo\.dot_general .*: \(tensor<(?:\d+x)*(\w+)>, tensor<(?:\d+x)*(\w+)>\)", text)
    return Counter(sig)


def attention_calls(text) -> Counter:
    return Counter(re.findall(r"custom_call @__cudnn\$(\w+)\(", text))


def config_field(text, name) -> Counter:
    return Counter(re.findall(name + r"\\22: (?:\\22)?(\w+)", text))


@pytest.mark.parametrize("size,layers", [("s309m", 24), ("s823m", 16)])
def test_paper_sizes_use_cudnn_flash_attention_and_bfloat16_matmuls(as_h100, size, layers):
    text = cuda_program(size, (1, 1, 1))
    assert attention_calls(text) == {"fmhaSoftmax": layers, "fmhaSoftmaxBackward": layers}
    assert config_field(text, "is_flash_attention") == {"true": 2 * layers}
    assert config_field(text, "mask_type") == {"CAUSAL": 2 * layers}
    # Per layer: q, k, v, output and 3 SwiGLU matmuls forward, 14 backward; the logits: 1 + 2.
    assert dot_operand_types(text) == {("bf16", "bf16"): 21 * layers + 3}
    assert not re.search(rf"tensor<[0-9x]*{T}x{T}x", text), "a [T, T] tensor outside cuDNN"


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2)])
def test_sharded_steps_partition_the_cudnn_call(as_h100, mesh_shape):
    text = cuda_program("s309m", mesh_shape)
    # Under a mesh jax wraps the cuDNN call for the SPMD partitioner (forward and backward).
    assert Counter(re.findall(r"custom_call @(\w+)", text))["CustomSPMDPartitioning"] == 2 * 24
    assert set(dot_operand_types(text)) == {("bf16", "bf16")}
    assert not re.search(rf"tensor<[0-9x]*{T}x{T}x", text)


def test_packed_rows_keep_flash_attention_with_a_segment_bias(as_h100):
    # jax's cuDNN route turns the segment mask into a [B, 1, T, T] additive bias: still flash
    # attention, at the cost of reading that bias (windows, the paper's data mode, has none).
    text = cuda_program("s309m", (1, 1, 1), batch=2, packed=True)
    assert attention_calls(text) == {"fmhaScaleBiasSoftmax": 24, "fmhaScaleBiasSoftmaxBackward": 24}
    assert config_field(text, "is_flash_attention") == {"true": 48}
    assert set(dot_operand_types(text)) == {("bf16", "bf16")}


@pytest.mark.parametrize("head_dim,seq_len,segments", [
    (64, 32, False), (12, 32, False), (72, 32, False), (256, 32, False), (264, 32, False),
    (64, 33, True), (64, 32, True), (64, 33, False)])
def test_cudnn_shape_limits_are_jaxs(as_h100, head_dim, seq_len, segments):
    """slmjax.model.attention's cuDNN shape check against jax itself: the gradient of jax's cuDNN
    attention, lowered for CUDA as an H100 (head dims up to 256), refuses exactly the shapes the
    check names, with or without a segment mask; the forward alone takes odd lengths.
    (model.attention=auto on a GPU goes to XLA's attention for them, and for head dims over 128,
    the limit before Hopper; an explicit cudnn is refused by the config check.)"""
    import jax.numpy as jnp

    from slmjax.model.attention import cudnn_shape_problem

    x = jax.ShapeDtypeStruct((2, seq_len, 2, head_dim), jnp.bfloat16)
    seg = jax.ShapeDtypeStruct((2, seq_len), jnp.int32)

    def loss(q, k, v, s):
        mask = (s[:, None, :, None] == s[:, None, None, :]) if segments else None
        out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True, implementation="cudnn")
        return out.astype(jnp.float32).sum()

    def refusal(fn):
        try:
            jax.jit(fn).trace(x, x, x, seg).lower(lowering_platforms=("cuda",))
        except (NotImplementedError, ValueError) as e:
            return str(e)
        return None

    refused = refusal(jax.grad(loss, argnums=(0, 1, 2)))
    assert (refused is not None) == (cudnn_shape_problem(head_dim, seq_len) is not None), refused
    if head_dim % 8 == 0 and head_dim <= 256:
        assert refusal(loss) is None   # the forward: any length
