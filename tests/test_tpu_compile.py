"""The train step compiled by libtpu for TPU slices on this CPU-only host (tools/compile_tpu.py).

The compilations run in subprocesses: libtpu is loaded there only. Without libtpu (`make
tpu-compiler`, which `make test` runs) those tests skip.
"""

import json
import os
import subprocess
import sys

import pytest

from slmjax.train import tpu_compile
from slmjax.train.tpu_compile import TpuCompileError, oom_sizes, topology

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _has_libtpu() -> bool:
    try:
        tpu_compile._libtpu_path()
        return True
    except TpuCompileError:
        return False


needs_libtpu = pytest.mark.skipif(not _has_libtpu(), reason="libtpu not installed (make tpu-compiler)")


def _run(args, code=None):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = ROOT + os.pathsep + os.path.join(ROOT, "tools")
    cmd = [sys.executable] + (["-c", code] if code else [os.path.join(ROOT, "tools", "compile_tpu.py")]) + args
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


@pytest.mark.parametrize("tpu, name", [
    ("v4-8", "v4:2x2x1"), ("v4-32", "v4:4x2x2"), ("v4-128", "v4:4x4x4"), ("v5p-16", "v5p:2x2x2"),
    ("v5e-16", "v5e:4x4"), ("v5litepod-8", "v5e:4x2"), ("v6e-256", "v6e:16x16"), ("v4:2x2x4", "v4:2x2x4")])
def test_accelerator_types_map_to_topologies(tpu, name):
    """v4/v5p-N count TensorCores (N/2 chips, 3-D); v5e/v6e-N count chips (2-D)."""
    assert topology(tpu) == name


@pytest.mark.parametrize("tpu, why", [("v4-4", "2 chips"), ("v5e-12", "12 chips"), ("v3-8", "not an accelerator"),
                                      ("tpu", "not an accelerator")])
def test_unlayable_slices_are_one_clear_error(tpu, why):
    with pytest.raises(TpuCompileError, match=why):
        topology(tpu)


def test_out_of_memory_refusal_is_read():
    """libtpu's refusal (as printed for s20m at batch 64 on a v5e-4 with XLA's attention)."""
    msg = ("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries "
           "(63.92G) exceeds available HBM (15.75G).")
    assert oom_sizes(msg) == (63.92 * 2 ** 30, 15.75 * 2 ** 30)
    assert oom_sizes("INTERNAL: something else") is None


_COMPILE = """
import json, sys
from slmjax.launch import trainconf
from slmjax.train.tpu_compile import compile_step, tpu_devices
sets = json.loads(sys.argv[2])
print(json.dumps(compile_step(trainconf.load("configs/train.py", "tiny", [tuple(s) for s in sets]),
                              tpu_devices(sys.argv[1]))))
"""


def _compile(tpu, sets):
    proc = _run([tpu, json.dumps(sets)], code=_COMPILE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_libtpu
def test_fsdp_step_gives_each_chip_its_own_sequences():
    """Counted per chip: 6N + 12LHQT/2 FLOPs of its batch share. With XLA's (unmasked) attention the
    compiler's count is that plus the masked half, ~1.09x. Without the model's activation
    constraints (slmjax.model.partitioning) each chip ran the whole batch's attention: 3.9x the
    FLOPs and 8x the temporaries (85 MB against 10.7 MB)."""
    r = _compile("v5e-8", [["model.attention", "xla"], ["data.seq_len", 512], ["model.max_seq_len", 512]])
    assert r["fits"] and r["chips"] == 8 and r["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
    ratio = r["compiler_flops_per_chip"] / r["counted_flops_per_chip"]
    assert 1.0 < ratio < 1.25, ratio
    assert r["temp_bytes"] < 30e6


@needs_libtpu
def test_packed_rows_compile_with_splash_attention():
    """Auto picks splash on TPU; packed rows pass their segment ids through it."""
    r = _compile("v5e-4", [["data.mode", "packed"], ["data.seq_len", 200], ["model.max_seq_len", 256]])
    assert r["fits"] and r["attention"] == "splash" and r["state_bytes"] > 0
    # The kernel's FLOPs are outside the compiler's count: below the counted, never above.
    assert 0.5 < r["compiler_flops_per_chip"] / r["counted_flops_per_chip"] < 1.05


@needs_libtpu
def test_tool_prints_the_table_and_json():
    proc = _run(["--tpu=v5e-4", "--sizes=tiny", "--remat=full"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    row = json.loads(lines[-1])[0]
    assert row["size"] == "tiny" and row["topology"] == "v5e:2x2" and row["remat"] == "full"
    assert any(ln.startswith("| tiny | 1,4,1 | 16 | 1 |") and "| yes |" in ln for ln in lines)


def test_tool_refuses_a_bad_slice_in_one_line():
    proc = _run(["--tpu=v4-4", "--sizes=tiny"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == "compile_tpu.py: --tpu=v4-4: 2 chips; a slice of 4, 8, 16, ... chips " \
                                  "(a power of 2) can be laid out here, or give its topology (e.g. v4:2x2x4)"
