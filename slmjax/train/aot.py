"""The training step compiled ahead of time for a TPU slice or GPU nodes, on a host without them.

The devices come from slmjax.train.tpu_topology (libtpu lays out a slice's chips) or
slmjax.train.gpu_topology (JAX's CUDA plugin, given the cards' description); the step is traced for
their platform (slmjax.train.trace) and compiled by the target's own XLA compiler. What comes back
is what a launch needs to know before it books the machines: whether the step fits each device's
memory (XLA's own accounting: state, temporaries, code).

A TPU compilation also refuses a program over the HBM (its figures are read back); a GPU one does
not, so there the total is set against the pool JAX's allocator takes on the card
(XLA_CLIENT_MEM_FRACTION of its memory, 0.75 unless set). Beside the step's counted FLOPs
per device comes XLA's cost analysis on TPU: with XLA's attention on v4 or v5e the two agree to
~1.09x (the masked half of the scores), and work duplicated across chips shows as a multiple;
Pallas kernels (splash) are outside XLA's count, and v6e's count is ~1.8x at the tiny model's
shapes, so it is a check, not a FLOP counter. The GPU compiler gives no count.
"""

from __future__ import annotations

import contextlib
import os
import re

from slmjax.model import attention, platform
from slmjax.model.config import resolve_dtype
from slmjax.train.flops import flops_per_token
from slmjax.train.trace import trace_step
from slmjax.train.validate import mesh_shape, model_config

_SIZE = r"([\d.]+) ?([KMGTPE]?)(?:i?B)?"  # libtpu writes 63.92G; also read 512B, 1.5KiB, 2.00GiB
# libtpu's out-of-memory refusals: (asked, available) for the whole program (state and temporaries).
_OOM = (re.compile(rf"required for HLO temporaries \({_SIZE}\) exceeds available HBM \({_SIZE}\)"),
        re.compile(rf"Used {_SIZE} of {_SIZE} hbm"))


class CompileTargetError(ValueError):
    """A TPU slice, GPU layout or config that cannot be compiled for (one line)."""


def oom_sizes(message: str) -> tuple[float, float] | None:
    """(HBM asked for: state and temporaries, HBM available) in bytes from libtpu's out-of-memory
    refusal; None for any other error."""
    for pattern in _OOM:
        m = pattern.search(message)
        if m:
            return tuple(float(m[i]) * 1024 ** "_KMGTPE".index(m[i + 1] or "_") for i in (1, 3))
    return None


def gpu_memory_fraction() -> tuple[float, str]:
    """(the fraction of a GPU's memory JAX's allocator may use, the variable that set it), as jaxlib
    reads it: XLA_CLIENT_MEM_FRACTION, else the deprecated XLA_PYTHON_CLIENT_MEM_FRACTION, else 0.75."""
    names = [n for n in ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION") if os.environ.get(n)]
    if len(names) == 2:
        raise CompileTargetError("XLA_CLIENT_MEM_FRACTION and XLA_PYTHON_CLIENT_MEM_FRACTION are both set "
                                 "(jax refuses that): unset the second, which is deprecated")
    if not names:
        return 0.75, "the default"
    value = os.environ[names[0]]
    try:
        fraction = float(value)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction <= 1:
        raise CompileTargetError(f"{names[0]}={value!r}: expected a fraction in (0, 1]")
    return fraction, names[0]


def device_memory(device) -> float | None:
    """Bytes the step may use on `device`: a TPU chip's HBM, JAX's pool on a GPU; None if unknown."""
    from slmjax.train import gpu_topology, tpu_topology

    if device.platform == "tpu":
        gib = tpu_topology.HBM_GIB.get(device.device_kind)
        return None if gib is None else gib * 2 ** 30
    return gpu_topology.memory_bytes(device.device_kind) * gpu_memory_fraction()[0]


def compile_step(config, devices) -> dict:
    """Compiles the config's train step for `devices` (from tpu_devices or gpu_devices). Returns
    per device: fits, state / temporaries / code / total bytes (XLA's accounting; on libtpu's
    out-of-memory refusal only the total it asked for and the HBM it had), the memory it may use
    (`hbm_bytes`), compiler and counted FLOPs."""
    n, kind = len(devices), devices[0].device_kind
    target = "tpu" if devices[0].platform == "tpu" else "gpu"
    with platform.target(target), _gpu_queries(devices[0]):
        lowered = trace_step(config, devices, target).lower()
        cfg = model_config(config)
        kernel = attention.resolve(cfg.attention, resolve_dtype(cfg.dtype))
    b, t = int(config.train.batch_size), int(config.data.seq_len)
    out = {"chips": n, "device_kind": kind, "mesh": mesh_shape(config, n),
           "batch_size": b, "micro_batches": int(config.train.micro_batches),
           "attention": kernel, "remat": cfg.remat,
           "counted_flops_per_chip": flops_per_token(cfg, t)["6n_attn"] * b * t / n,
           "hbm_bytes": device_memory(devices[0])}
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
    fits = target == "tpu" or out["hbm_bytes"] is None or total <= out["hbm_bytes"]
    return {**out, "fits": fits, "state_bytes": mem.argument_size_in_bytes, "temp_bytes": mem.temp_size_in_bytes,
            "code_bytes": mem.generated_code_size_in_bytes, "total_bytes": total,
            "compiler_flops_per_chip": flops}


def _gpu_queries(device):
    """jax asks the local GPU and cuDNN while it traces the cuDNN attention: answered for `device`."""
    from slmjax.train import gpu_topology

    if device.platform == "tpu":
        return contextlib.nullcontext()
    return gpu_topology.answer_as(device.device_kind)


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
