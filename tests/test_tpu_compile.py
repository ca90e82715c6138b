"""The train step compiled by libtpu for TPU slices on this CPU-only host (tools/compile_step.py --tpu).

The compilations run in subprocesses: libtpu is loaded there only. Without libtpu (`make
tpu-compiler`, which `make test` runs) those tests skip.
"""

import json
import os
import re

import pytest
from compile_tool import one_line, run_tool

from slmjax.train import tpu_topology
from slmjax.train.aot import CompileTargetError, oom_sizes
from slmjax.train.tpu_topology import accelerator_type, topology

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _has_libtpu() -> bool:
    try:
        tpu_topology._libtpu_path()
        return True
    except CompileTargetError:
        return False


needs_libtpu = pytest.mark.skipif(not _has_libtpu(), reason="libtpu not installed (make tpu-compiler)")


@pytest.mark.parametrize("tpu, name", [
    ("v4-8", "v4:2x2x1"), ("v4-32", "v4:2x2x4"), ("v4-64", "v4:2x4x4"), ("v4-128", "v4:4x4x4"),
    ("v4-256", "v4:4x4x8"), ("v5p-16", "v5p:2x2x2"), ("v5e-16", "v5e:4x4"), ("v5litepod-8", "v5e:2x4"),
    ("v6e-32", "v6e:4x8"), ("v6e-256", "v6e:16x16"), ("v4:4x2x2", "v4:4x2x2")])
def test_accelerator_types_map_to_topologies(tpu, name):
    """v4/v5p-N count TensorCores (N/2 chips, 3-D); v5e/v6e-N count chips (2-D)."""
    assert topology(tpu) == name


@pytest.mark.parametrize("tpu, why", [("v4-4", "2 chips"), ("v5e-12", "12 chips"), ("v3-8", "not an accelerator"),
                                      ("tpu", "not an accelerator")])
def test_unlayable_slices_are_one_clear_error(tpu, why):
    with pytest.raises(CompileTargetError, match=why):
        topology(tpu)


def test_out_of_memory_refusal_is_read():
    """libtpu's refusal (as printed for s20m at batch 64 on a v5e-4 with XLA's attention)."""
    msg = ("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries "
           "(63.92G) exceeds available HBM (15.75G).")
    assert oom_sizes(msg) == (63.92 * 2 ** 30, 15.75 * 2 ** 30)
    assert oom_sizes(msg.replace("63.92G", "512.00M").replace("15.75G", "1.5KiB")) == (512 * 2 ** 20, 1536)
    assert oom_sizes(msg.replace("63.92G", "900B")) == (900, 15.75 * 2 ** 30)
    # Its other form (the whole program over the HBM) is one too.
    assert oom_sizes("RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space "
                     "hbm. Used 40.50G of 15.75G hbm. Exceeded hbm capacity by 24.75G.") == \
        (40.5 * 2 ** 30, 15.75 * 2 ** 30)
    assert oom_sizes("INTERNAL: something else") is None


@pytest.mark.parametrize("name, kind", [("v4:2x2x4", "v4-32"), ("v5p:2x2x2", "v5p-16"), ("v5e:2x2", "v5litepod-4"),
                                        ("v6e:4x2", "v6e-8")])
def test_topologies_name_their_accelerator_type(name, kind):
    assert accelerator_type(name) == kind


_COMPILE = """
import json, sys
from slmjax.launch import trainconf
from slmjax.train.aot import compile_step
from slmjax.train.tpu_topology import tpu_devices
sets = json.loads(sys.argv[2])
print(json.dumps(compile_step(trainconf.load("configs/train.py", "tiny", [tuple(s) for s in sets]),
                              tpu_devices(sys.argv[1]))))
"""


def _compile(tpu, sets):
    proc = run_tool([tpu, json.dumps(sets)], code=_COMPILE)
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


def _pallas_calls(jaxpr) -> list:
    """Every pallas_call equation of a jaxpr, inner jaxprs (scan, custom_vjp, shard_map) included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "pallas_call":
            found.append(eqn)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _pallas_calls(inner)
    return found


def test_the_tpu_step_gives_splash_the_packed_rows_segment_ids():
    """Traced for TPU (no libtpu needed), each splash kernel of a packed-rows step takes the rows'
    segment ids (query and key ids: two more int32 operands, per sequence) beside its block masks."""
    import jax
    import jax.numpy as jnp

    from slmjax.train.trace import trace_step
    from test_train_step_sharded import load_config

    int_operands = {}
    for mode in ("windows", "packed"):
        c = load_config("tiny")
        c.data.mode, c.model.attention, c.train.batch_size = mode, "auto", 2
        c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 1, 1
        calls = _pallas_calls(trace_step(c, jax.devices()[:1], "tpu").jaxpr.jaxpr)
        assert len(calls) == 2 * c.model.n_layers, mode  # forward and backward per layer
        int_operands[mode] = [[v.aval.shape for v in e.invars if v.aval.dtype == jnp.int32] for e in calls]
    for plain, packed in zip(int_operands["windows"], int_operands["packed"]):
        extra = [s for s in packed if s not in plain or packed.count(s) > plain.count(s)]
        assert len(packed) == len(plain) + 2 and all(s[0] == 2 for s in extra), (plain, packed)


@needs_libtpu
def test_packed_rows_compile_with_splash_attention():
    """Auto picks splash on TPU and the packed-rows step compiles for a slice."""
    r = _compile("v5e-4", [["data.mode", "packed"], ["data.seq_len", 200], ["model.max_seq_len", 256]])
    assert r["fits"] and r["attention"] == "splash" and r["state_bytes"] > 0
    # The kernel's FLOPs are outside the compiler's count: below the counted, never above.
    assert 0.5 < r["compiler_flops_per_chip"] / r["counted_flops_per_chip"] < 1.05


@needs_libtpu
def test_tool_prints_the_table_and_json():
    proc = run_tool(["--tpu=v5e-4", "--sizes=tiny", "--remat=full"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    row = json.loads(lines[-1])[0]
    assert row["size"] == "tiny" and row["topology"] == "v5e:2x2" and row["remat"] == "full"
    assert any(ln.startswith("| tiny | 1,4,1 | 16 | 1 |") and "| yes |" in ln for ln in lines)


def test_tool_refuses_a_bad_slice_in_one_line():
    proc = run_tool(["--tpu=v4-4", "--sizes=tiny"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == "compile_step.py: --tpu=v4-4: 2 chips; a slice of 4, 8, 16, ... chips " \
                                  "(a power of 2) can be laid out here, or give its topology (e.g. v4:2x2x4)"


@needs_libtpu
def test_tool_refuses_a_topology_libtpu_rejects_in_one_line():
    """Without TPU_ACCELERATOR_TYPE and TPU_WORKER_HOSTNAMES libtpu printed six lines of its own."""
    one_line(run_tool(["--tpu=v5e:1x1", "--sizes=tiny"]), "--tpu=v5e:1x1: libtpu has no topology v5e:1x1")


@needs_libtpu
def test_tool_refuses_a_config_in_one_line():
    one_line(run_tool(["--tpu=v5e-4", "--sizes=tiny", "--mesh=1,2,1"]),
              "tiny: mesh data*fsdp*tensor = 1*2*1 = 2 does not match the 4 available devices")


@needs_libtpu
def test_a_stale_library_path_is_replaced():
    """A TPU_LIBRARY_PATH to no file (which jax's import warns of) is replaced by the libtpu found;
    it was kept, and the slice had 'no topology' (JAX TPU support not installed)."""
    proc = run_tool(["--tpu=v5e-4", "--sizes=tiny", "--mesh=1,2,1"], TPU_LIBRARY_PATH="/nonexistent/libtpu.so")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("compile_step.py: tiny: mesh data*fsdp*tensor = 1*2*1 = 2 "
                                                     "does not match the 4 available devices"), proc.stderr[-3000:]


def test_tool_without_libtpu_says_so_in_one_line():
    code = ("import runpy, sys; sys.modules['libtpu'] = None\n"
            "from slmjax.train import tpu_topology; tpu_topology.LIBTPU_DIR = '/nonexistent'\n"
            "sys.argv[0] = 'compile_step.py'; runpy.run_path('tools/compile_step.py', run_name='__main__')")
    one_line(run_tool(["--tpu=v5e-4", "--sizes=tiny"], code=code), "libtpu is not installed: `make tpu-compiler`")


def _strict_json(line):
    return json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the JSON line"))


@needs_libtpu
def test_out_of_memory_row_gives_the_total_asked():
    """libtpu's figure is the whole program's (state and temporaries), so it is the row's total."""
    proc = run_tool(["--tpu=v5e-4", "--sizes=tiny", "--attention=xla", "--batch_size=65536"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    row = _strict_json(lines[-1])[0]
    assert not row["fits"] and row["total_bytes"] > row["hbm_bytes"] > 15 * 2 ** 30
    assert row["state_bytes"] is row["temp_bytes"] is row["code_bytes"] is row["compiler_flops_per_chip"] is None
    assert any(ln.startswith("| tiny | 1,4,1 | 65536 | 1 | - | - | - | ") and ln.endswith("| 15.75 | no |")
               for ln in lines)


_BIG = """
import importlib.util
spec = importlib.util.spec_from_file_location("train_config", {path!r})
base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base)


def get_config(arg):
    c = base.get_config(arg)
    c.model.dim, c.model.n_heads = {dim}, {dim} // 128  # replicated state: 13.9 GiB per chip at 7168
    return c
"""


@needs_libtpu
def test_micro_batch_search_says_when_nothing_fits(tmp_path):
    config = tmp_path / "big.py"
    config.write_text(_BIG.format(path=os.path.join(ROOT, "configs", "train.py"), dim=7168))
    proc = run_tool(["--tpu=v5e-4", "--sizes=tiny", "--attention=xla", "--mesh=4,1,1", "--batch_size=4",
                 "--micro_batches=0", f"--train_config={config}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tiny: micro_batches=1 does not fit (" in proc.stderr
    assert "tiny: no micro-batch count (1) fits with 10% free; its row is micro_batches=1" in proc.stderr
    row = _strict_json(proc.stdout.strip().splitlines()[-1])[0]
    assert not row["fits"] and row["micro_batches"] == 1 and row["total_bytes"] > row["hbm_bytes"]


@needs_libtpu
def test_micro_batch_search_wants_headroom(tmp_path):
    """A step that fits but leaves less than --headroom of the HBM free is not the search's answer."""
    config = tmp_path / "big.py"
    config.write_text(_BIG.format(path=os.path.join(ROOT, "configs", "train.py"), dim=3072))
    args = ["--tpu=v5e-4", "--sizes=tiny", "--attention=xla", "--mesh=4,1,1", "--batch_size=4",
            "--micro_batches=0", f"--train_config={config}"]
    roomy, tight = run_tool(args + ["--headroom=0.5"]), run_tool(args + ["--headroom=0.9"])
    for proc in roomy, tight:
        assert proc.returncode == 0, proc.stderr[-3000:]
    row = _strict_json(tight.stdout.strip().splitlines()[-1])[0]
    assert row["fits"] and 0.1 * row["hbm_bytes"] < row["total_bytes"] < 0.5 * row["hbm_bytes"], row
    assert re.search(r"micro_batches=1 fits \(\d+\.\d\d of 16\.00 GiB\)", roomy.stderr), roomy.stderr
    assert "micro_batches=1 fits, but leaves under 90% free (" in tight.stderr
    assert "no micro-batch count (1) fits with 90% free; its row is micro_batches=1" in tight.stderr


def test_mesh_candidates_put_fewest_tensor_shards_first_and_say_why_not():
    """16 chips: s309m's 252 sequences split over 4 shards (252 = 4 x 63), not 8 or 16; s20m's 8
    heads do not split 16 ways; s823m's 456 = 8 x 57 and 608 = 16 x 38."""
    from slmjax.launch import trainconf
    from slmjax.train.aot import mesh_candidates

    def candidates(size, batch):
        config = trainconf.load(os.path.join(ROOT, "configs", "train.py"), size, [("train.batch_size", batch)])
        return [((m["data"], m["fsdp"], m["tensor"]), why) for m, why in mesh_candidates(config, 16)]

    meshes = [(1, 16, 1), (1, 8, 2), (1, 4, 4), (1, 2, 8), (1, 1, 16)]
    got = candidates("s309m", 252)
    assert [m for m, _ in got] == meshes
    assert [why is None for _, why in got] == [False, False, True, True, True]
    assert got[0][1] == "batch 252 does not split over 16 batch shards at any micro-batch count"
    assert [why for _, why in candidates("s20m", 64)][-1] == "mesh.tensor=16 does not divide model.n_heads=8"
    assert [why is None for _, why in candidates("s823m", 456)] == [False, True, True, True, True]
    assert [why is None for _, why in candidates("s823m", 608)] == [True] * 5


@needs_libtpu
def test_mesh_search_takes_the_first_mesh_that_splits_the_batch_and_fits():
    proc = run_tool(["--tpu=v5e-4", "--sizes=tiny", "--batch_size=6", "--mesh=search", "--micro_batches=0"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tiny: mesh 1,4,1: batch 6 does not split over 4 batch shards at any micro-batch count" in proc.stderr
    assert "tiny: micro_batches=1 fits (" in proc.stderr
    lines = proc.stdout.strip().splitlines()
    row = _strict_json(lines[-1])[0]
    assert row["fits"] and row["mesh"] == {"data": 1, "fsdp": 2, "tensor": 2} and row["micro_batches"] == 1
    layout = '"mesh": {"data": 1, "fsdp": 2, "tensor": 2}, "train": {"micro_batches": 1}'
    assert f"  'tiny': {{{layout}}}," in lines
    # 7 sequences split over no FSDP shard count of 4 chips with 2 heads (tensor 4 > heads): each
    # mesh's reason, then the refusal.
    proc = run_tool(["--tpu=v5e-4", "--sizes=tiny", "--batch_size=7", "--mesh=search", "--micro_batches=0"])
    assert proc.returncode == 2 and proc.stderr.rstrip().splitlines() == [
        "  tiny: mesh 1,4,1: batch 7 does not split over 4 batch shards at any micro-batch count",
        "  tiny: mesh 1,2,2: batch 7 does not split over 2 batch shards at any micro-batch count",
        "  tiny: mesh 1,1,4: mesh.tensor=4 does not divide model.n_heads=2",
        "compile_step.py: tiny: no FSDP x tensor mesh of 4 devices takes its batch and heads"], proc.stderr
