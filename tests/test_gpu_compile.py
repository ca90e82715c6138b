"""The train step compiled for GPUs on this GPU-less host (tools/compile_step.py --gpu).

The compilations run in subprocesses: JAX's CUDA plugin is loaded there only, before JAX starts.
Without the plugin (`make gpu-compiler`, which `make test` runs) those tests skip.
"""

import json

import pytest
from compile_tool import one_line, run_tool

from slmjax.train import gpu_topology
from slmjax.train.aot import CompileTargetError
from slmjax.train.gpu_topology import parse, topology

MIB = 2 ** 20
needs_plugin = pytest.mark.skipif(
    not (gpu_topology.bundled_plugin_installed() or gpu_topology.plugin_in_environment()),
    reason="JAX's CUDA plugin not installed (make gpu-compiler)")


def _rows(proc) -> list[dict]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("spec, parsed, name", [
    ("h100", ("h100", 1, 1), "h100:1x1"), ("H100:8", ("h100", 1, 8), "h100:1x8"),
    ("h200:2x8", ("h200", 2, 8), "h200:2x8"), ("a100:4x8", ("a100", 4, 8), "a100:4x8")])
def test_gpu_layouts_are_read(spec, parsed, name):
    assert parse(spec) == parsed and topology(spec) == name


@pytest.mark.parametrize("spec", ["v100:8", "h100:0", "h100:2x", "h100:8x2x1", "h100-8", ""])
def test_unknown_gpu_layouts_are_one_clear_error(spec):
    with pytest.raises(CompileTargetError, match=r"expected KIND\[:\[NODESx\]GPUS\] with KIND one of a100, h100, h200"):
        parse(spec)


def test_target_config_describes_the_card():
    text = gpu_topology.target_config("h100")
    assert f"device_memory_size: {81559 * MIB}\n" in text and "core_count: 132\n" in text
    assert "cuda_compute_capability { major: 9 minor: 0 }" in text
    assert 'device_description_str: "NVIDIA H100 80GB HBM3"' in text
    assert "cuda_compute_capability { major: 8 minor: 0 }" in gpu_topology.target_config("a100")


@needs_plugin
def test_state_is_the_papers_params_and_adamw_moments():
    """s309m on one H100: the step's arguments are the paper's 308,845,568 float32 parameters and
    AdamW's two float32 moments (12 bytes each), three int32 counters and the batch (inputs and
    targets int32, weights float32); cuDNN's flash attention; 16 x 2050 fits the 0.75 pool."""
    row = _rows(run_tool(["--gpu=h100", "--sizes=s309m", "--batch_size=16"]))[0]
    assert row["state_bytes"] == 12 * 308_845_568 + 3 * 4 + 16 * 2050 * 12
    assert row["attention"] == "cudnn" and row["device_kind"] == "NVIDIA H100 80GB HBM3"
    assert row["hbm_bytes"] == 0.75 * 81559 * MIB
    assert row["fits"] and row["state_bytes"] + row["temp_bytes"] <= row["total_bytes"] < row["hbm_bytes"]
    assert row["compiler_flops_per_chip"] is None  # the GPU compiler gives no cost analysis


@needs_plugin
def test_fsdp_halves_each_gpus_state_and_temporaries_follow_the_batch():
    two = _rows(run_tool(["--gpu=h100:1x2", "--sizes=tiny", "--mesh=1,2,1"]))[0]
    one = _rows(run_tool(["--gpu=h100", "--sizes=tiny"]))[0]
    assert two["chips"] == 2 and two["mesh"] == {"data": 1, "fsdp": 2, "tensor": 1}
    assert 0.5 <= two["state_bytes"] / one["state_bytes"] < 0.53  # RMSNorm scales stay whole
    double = _rows(run_tool(["--gpu=h100", "--sizes=tiny", "--batch_size=32"]))[0]
    assert 1.6 < double["temp_bytes"] / one["temp_bytes"] < 2.2


@needs_plugin
def test_pool_follows_the_memory_fraction_and_a_step_over_it_does_not_fit():
    proc = run_tool(["--gpu=h100", "--sizes=tiny", "--batch_size=4096", "--micro_batches=0"],
                XLA_CLIENT_MEM_FRACTION="0.02")
    row = _rows(proc)[0]
    assert row["hbm_bytes"] == 0.02 * 81559 * MIB
    # The fewest micro-batches whose step leaves 10% of the pool free: the first tried did not fit.
    assert row["micro_batches"] > 1 and row["total_bytes"] <= 0.9 * row["hbm_bytes"]
    assert "tiny: micro_batches=1 does not fit (" in proc.stderr
    assert "*JAX's pool: 0.02 of the card's 79.65 GiB (XLA_CLIENT_MEM_FRACTION; " in proc.stdout


@pytest.mark.parametrize("args", [["--sizes=tiny"], ["--tpu=v5e-4", "--gpu=h100", "--sizes=tiny"]])
def test_tool_takes_one_target(args):
    one_line(run_tool(args), "give one of --tpu (v4-32, v5e-16, ...) and --gpu (h100:8, h100:2x8, ...)")


def test_tool_refuses_a_bad_layout_or_fraction_in_one_line():
    one_line(run_tool(["--gpu=v100:8", "--sizes=tiny"]), "--gpu='v100:8': expected KIND[:[NODESx]GPUS] with KIND "
             "one of a100, h100, h200 (h100, h100:8, h100:2x8)")
    # Named before the plugin loads (jaxlib's own refusal was a traceback).
    one_line(run_tool(["--gpu=h100", "--sizes=tiny"], XLA_CLIENT_MEM_FRACTION="lots"),
             "XLA_CLIENT_MEM_FRACTION='lots': expected a fraction in (0, 1]")
    one_line(run_tool(["--gpu=h100", "--sizes=tiny"], XLA_CLIENT_MEM_FRACTION="0.5", XLA_PYTHON_CLIENT_MEM_FRACTION="0.5"),
             "XLA_CLIENT_MEM_FRACTION and XLA_PYTHON_CLIENT_MEM_FRACTION are both set")


@needs_plugin
def test_tool_refuses_splash_and_a_bad_plugin_setting_in_one_line():
    one_line(run_tool(["--gpu=h100", "--sizes=tiny", "--attention=splash"]),
             "tiny: model.attention=splash needs a TPU; this run is on gpu")
    one_line(run_tool(["--gpu=h100", "--sizes=tiny"], XLA_PYTHON_CLIENT_ALLOCATOR="nope"),
             "JAX's CUDA plugin did not load: XLA_PYTHON_CLIENT_ALLOCATOR env var must be")


def test_answers_to_jax_are_the_cards_and_are_taken_back():
    from jax._src.cudnn import fused_attention_stablehlo as cudnn

    before = cudnn.check_compute_capability
    with gpu_topology.answer_as("NVIDIA A100-SXM4-80GB"):
        assert cudnn.check_compute_capability("8.0") and not cudnn.check_compute_capability("9.0")
        assert cudnn.is_cuda_compute_capability_equal("8.0") and cudnn.check_cudnn_version() == 91000
    assert cudnn.check_compute_capability is before
    with pytest.raises(CompileTargetError, match="unknown GPU 'NVIDIA V100'"):
        gpu_topology.memory_bytes("NVIDIA V100")


@pytest.mark.skipif(gpu_topology.plugin_in_environment(), reason="the environment has JAX's CUDA plugin (used instead of .venv/gpu-compiler)")
def test_tool_without_the_plugin_says_so_in_one_line():
    code = ("import runpy, sys\n"
            "from slmjax.train import gpu_topology; gpu_topology.GPU_COMPILER_DIR = '/nonexistent'\n"
            "sys.argv[0] = 'compile_step.py'; runpy.run_path('tools/compile_step.py', run_name='__main__')")
    one_line(run_tool(["--gpu=h100", "--sizes=tiny"], code=code),
              "JAX's CUDA plugin is not installed: `make gpu-compiler` (pip install jax-cuda13-plugin and "
              "jax-cuda13-pjrt into .venv/gpu-compiler)")


@needs_plugin
def test_vocab_size_adds_its_embedding_rows_to_the_state():
    """--vocab_size=1000 (tiny: width 128, tied embedding): 498 more rows of 128 float32 weights and
    their two AdamW moments, 12 bytes each."""
    base, big = (_rows(run_tool(["--gpu=h100", "--sizes=tiny", *extra]))[0] for extra in ([], ["--vocab_size=1000"]))
    assert big["state_bytes"] - base["state_bytes"] == 12 * (1000 - 502) * 128
