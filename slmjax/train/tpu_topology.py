"""The training step compiled for a TPU slice on a host without one (deviceless AOT compilation).

libtpu's compiler runs on any x86-64 Linux host: given a topology ("v4:2x2x4", 16 chips) it lays
out the TPU devices, and the sharded step lowers and compiles for them as it would on the slice.
What comes back is what a launch needs to know before it books the slice: whether the step fits
the chips' HBM (XLA's own accounting: state, temporaries, code). Also the FLOPs XLA's cost
analysis gives each chip, beside the step's counted FLOPs per chip: with XLA's attention on v4 or
v5e the two agree to ~1.09x (the masked half of the scores), and work duplicated across chips
shows as a multiple; Pallas kernels (splash) are outside XLA's count, and v6e's count is ~1.8x
at the tiny model's shapes, so it is a check, not a FLOP counter.

libtpu is looked up as a Python module, else under `.venv/tpu-compiler` of this checkout
(`make tpu-compiler` puts it there; outside the venv's import path, so that no other process of
this checkout starts a TPU runtime).
"""

from __future__ import annotations

import logging
import math
import os
import re

from slmjax.model import attention, platform
from slmjax.model.config import resolve_dtype
from slmjax.train.flops import flops_per_token
from slmjax.train.trace import trace_step
from slmjax.train.validate import mesh_shape, model_config

LIBTPU_DIR = os.path.join(os.path.dirname(__file__), "..", "..", ".venv", "tpu-compiler")
HBM_GIB = {"TPU v4": 32, "TPU v5 lite": 16, "TPU v5": 95, "TPU v6 lite": 32}  # per chip, nominal
_ACCELERATOR = re.compile(r"^(v4|v5p|v5litepod|v5e|v6e)-([1-9][0-9]*)$")
_TOPOLOGY = re.compile(r"^(v4|v5p|v5e|v6e):[1-9][0-9]*(x[1-9][0-9]*){1,2}$")
_SIZE = r"([\d.]+) ?([KMGTPE]?)(?:i?B)?"  # libtpu writes 63.92G; also read 512B, 1.5KiB, 2.00GiB
# libtpu's out-of-memory refusals: (asked, available) for the whole program (state and temporaries).
_OOM = (re.compile(rf"required for HLO temporaries \({_SIZE}\) exceeds available HBM \({_SIZE}\)"),
        re.compile(rf"Used {_SIZE} of {_SIZE} hbm"))


class TpuCompileError(ValueError):
    """A TPU type, topology or config that cannot be compiled for (one line)."""


def accelerator_type(name: str) -> str:
    """Accelerator type of a topology name (v4:2x2x4 -> v4-32, v5e:2x2 -> v5litepod-4)."""
    gen, dims = name.split(":")
    chips = math.prod(int(d) for d in dims.split("x"))
    return f"{'v5litepod' if gen == 'v5e' else gen}-{chips * 2 if gen in ('v4', 'v5p') else chips}"


def topology(tpu: str) -> str:
    """Topology name of an accelerator type (v4-32 -> v4:2x2x4; v5e-16 or v5litepod-16 -> v5e:4x4)
    or a topology name itself ("v4:2x2x4")."""
    if _TOPOLOGY.match(tpu):
        return tpu
    m = _ACCELERATOR.match(tpu)
    if not m:
        raise TpuCompileError(f"--tpu={tpu!r}: not an accelerator type (v4-32, v5p-16, v5e-16, "
                              "v5litepod-16, v6e-8) nor a topology (v4:2x2x4)")
    gen, n = m[1], int(m[2])
    chips = n // 2 if gen in ("v4", "v5p") else n  # v4/v5p count TensorCores, two per chip
    dims = [1, 1, 1] if gen in ("v4", "v5p") else [1, 1]
    if chips < 4 or chips & (chips - 1):
        raise TpuCompileError(f"--tpu={tpu}: {chips} chips; a slice of 4, 8, 16, ... chips (a power "
                              "of 2) can be laid out here, or give its topology (e.g. v4:2x2x4)")
    i = 0
    while math.prod(dims) < chips:
        dims[i % len(dims)] *= 2
        i += 1
    dims.sort(key=lambda d: (d == 1, d))  # Cloud TPU's names: A <= B <= C, v4-8 is 2x2x1
    return f"{'v5e' if gen == 'v5litepod' else gen}:{'x'.join(map(str, dims))}"


def _libtpu_path() -> str:
    try:
        import libtpu
        return libtpu.get_library_path()
    except ImportError:
        path = os.path.join(os.path.abspath(LIBTPU_DIR), "libtpu", "libtpu.so")
        if os.path.isfile(path):
            return path
    raise TpuCompileError("libtpu is not installed: `make tpu-compiler` (pip install libtpu into "
                          ".venv/tpu-compiler)")


def tpu_devices(tpu: str) -> list:
    """The devices of a TPU slice's topology, one per chip (megacore on v4/v5p), no TPU needed."""
    from jax.experimental import topologies

    name = topology(tpu)
    if not os.path.isfile(os.environ.get("TPU_LIBRARY_PATH", "")):  # jax ignores a stale one
        os.environ["TPU_LIBRARY_PATH"] = _libtpu_path()
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")  # no GCE metadata server to ask here
    # What the metadata server would say; unset, libtpu prints six lines of warnings on stderr.
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", accelerator_type(name))
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # compilers only: no chip to lock
    # With libtpu found, JAX's backend start-up tries a TPU runtime too and logs its failure.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    kw = {"chip_config_name": "megacore"} if name.startswith(("v4", "v5p")) else {}
    try:
        return list(topologies.get_topology_desc(topology_name=name, platform="tpu", **kw).devices)
    except Exception as e:  # libtpu's refusals are RuntimeErrors / XlaRuntimeErrors
        raise TpuCompileError(f"--tpu={tpu}: libtpu has no topology {name}: {str(e).splitlines()[0]}")


def oom_sizes(message: str) -> tuple[float, float] | None:
    """(HBM asked for: state and temporaries, HBM available) in bytes from libtpu's out-of-memory
    refusal; None for any other error."""
    for pattern in _OOM:
        m = pattern.search(message)
        if m:
            return tuple(float(m[i]) * 1024 ** "_KMGTPE".index(m[i + 1] or "_") for i in (1, 3))
    return None


def compile_step(config, devices) -> dict:
    """Compiles the config's train step for `devices` (from tpu_devices). Returns per chip:
    fits, state / temporaries / code / total bytes (XLA's accounting; on an out-of-memory refusal
    only the total it asked for and the HBM it had), compiler and counted FLOPs."""
    n, kind = len(devices), devices[0].device_kind
    with platform.target("tpu"):
        traced = trace_step(config, devices, "tpu")
        lowered = traced.lower()
        cfg = model_config(config)
        kernel = attention.resolve(cfg.attention, resolve_dtype(cfg.dtype))
    b, t = int(config.train.batch_size), int(config.data.seq_len)
    out = {"chips": n, "device_kind": kind, "mesh": mesh_shape(config, n),
           "batch_size": b, "micro_batches": int(config.train.micro_batches),
           "attention": kernel, "remat": cfg.remat,
           "counted_flops_per_chip": flops_per_token(cfg, t)["6n_attn"] * b * t / n,
           "hbm_bytes": HBM_GIB[kind] * 2 ** 30 if kind in HBM_GIB else None}
    try:
        compiled = lowered.compile()
    except Exception as e:  # XlaRuntimeError; only an out-of-memory refusal is a result
        sizes = oom_sizes(str(e))
        if sizes is None:
            raise
        return {**out, "fits": False, "total_bytes": sizes[0], "hbm_bytes": sizes[1],
                "state_bytes": None, "temp_bytes": None, "code_bytes": None, "compiler_flops_per_chip": None}
    mem, cost = compiled.memory_analysis(), compiled.cost_analysis() or {}
    total = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
             + mem.temp_size_in_bytes + mem.generated_code_size_in_bytes)
    # A scan's body is costed once: with micro-batches the compiler's count is one micro-batch's.
    flops = cost.get("flops") if out["micro_batches"] == 1 else None
    return {**out, "fits": True, "state_bytes": mem.argument_size_in_bytes, "temp_bytes": mem.temp_size_in_bytes,
            "code_bytes": mem.generated_code_size_in_bytes, "total_bytes": total,
            "compiler_flops_per_chip": flops}


def micro_batch_choices(config, n_devices: int) -> list[int]:
    """Micro-batch counts that split the batch evenly over the mesh's batch shards, fewest first."""
    shape = mesh_shape(config, n_devices)
    shards = shape["data"] * shape["fsdp"]
    b = int(config.train.batch_size)
    return [m for m in range(1, b + 1) if b % m == 0 and (b // m) % shards == 0]


def mesh_candidates(config, n_devices: int) -> list[tuple[dict, str | None]]:
    """Meshes (data 1, fsdp, tensor) to try for the config on n_devices, fewest tensor shards first
    (tensor parallelism talks at every layer; FSDP once per weight), each with None or why it
    cannot be used: tensor not dividing the heads or the FFN, or a batch no micro-batch count splits
    over the fsdp shards."""
    from slmjax.train.validate import problems

    out = []
    for t in (t for t in range(1, n_devices + 1) if n_devices % t == 0):
        mesh = {"data": 1, "fsdp": n_devices // t, "tensor": t}
        trial = config.copy_and_resolve_references()
        trial.mesh.update(mesh)
        trial.train.micro_batches = 1
        why = [p for p in problems(trial, n_devices) if p.startswith("mesh.tensor")]
        if not why and not micro_batch_choices(trial, n_devices):
            why = [f"batch {int(config.train.batch_size)} does not split over {mesh['fsdp']} "
                   "batch shards at any micro-batch count"]
        out.append((mesh, "; ".join(why) or None))
    return out
