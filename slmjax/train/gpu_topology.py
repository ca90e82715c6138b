"""GPU nodes' devices on a host without a GPU, for the deviceless compilation (slmjax.train.aot).

XLA's GPU compiler runs from JAX's CUDA plugin given a description of the card (its GpuTargetConfig:
compute capability, SMs, shared memory, memory size, cuDNN version) instead of a device, and lays
out `nodes x gpus` devices of it. The plugin (jax-cuda13-plugin and jax-cuda13-pjrt at jax's
version; no CUDA libraries needed) is used where the environment has it (a GPU login node), else
loaded from `.venv/gpu-compiler` of this checkout (`make gpu-compiler`), which is kept off the
venv's import path: there every JAX process of this checkout would look for a GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import re
import sys

from slmjax.train.aot import CompileTargetError

GPU_COMPILER_DIR = os.path.join(os.path.dirname(__file__), "..", "..", ".venv", "gpu-compiler")
CUDNN = (9, 10)  # the cuDNN version the compiled program is for (jax[cuda13] installs 9.x)
CUDA = (13, 0)


@dataclasses.dataclass(frozen=True)
class Gpu:
    """The SXM card as CUDA describes it (memory as nvidia-smi's memory.total)."""

    description: str  # the device_kind JAX reports
    compute_capability: tuple[int, int]
    memory_mib: int
    sms: int
    clock_ghz: float
    bandwidth: float  # bytes/s
    l2_bytes: int
    smem_per_sm: int
    smem_per_block_optin: int
    fp32_units_per_sm: int


GPUS = {
    "a100": Gpu("NVIDIA A100-SXM4-80GB", (8, 0), 81920, 108, 1.41, 2.039e12, 40 << 20, 167936, 166912, 64),
    "h100": Gpu("NVIDIA H100 80GB HBM3", (9, 0), 81559, 132, 1.98, 3.35e12, 50 << 20, 233472, 232448, 128),
    "h200": Gpu("NVIDIA H200", (9, 0), 143771, 132, 1.98, 4.8e12, 50 << 20, 233472, 232448, 128),
}
_SPEC = re.compile(r"^([a-z0-9]+)(?::(?:([1-9][0-9]*)x)?([1-9][0-9]*))?$")


def parse(spec: str) -> tuple[str, int, int]:
    """(kind, nodes, GPUs per node) of "h100" (one GPU), "h100:8" (one node of 8) or "h100:2x8"."""
    m = _SPEC.match(spec.strip().lower())
    if not m or m[1] not in GPUS:
        raise CompileTargetError(f"--gpu={spec!r}: expected KIND[:[NODESx]GPUS] with KIND one of "
                                 f"{', '.join(GPUS)} (h100, h100:8, h100:2x8)")
    return m[1], int(m[2] or 1), int(m[3] or 1)


def topology(spec: str) -> str:
    """The layout's canonical name: h100:2x8."""
    kind, nodes, per_node = parse(spec)
    return f"{kind}:{nodes}x{per_node}"


def target_config(kind: str) -> str:
    """The card's GpuTargetConfig (XLA's text proto), what the compiler reads instead of a device."""
    g = GPUS[kind]
    return f"""gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: {g.smem_per_sm}
  threads_per_core_limit: 2048
  core_count: {g.sms}
  fpus_per_core: {g.fp32_units_per_sm}
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {int(g.bandwidth)}
  l2_cache_size: {g.l2_bytes}
  clock_rate_ghz: {g.clock_ghz}
  device_memory_size: {g.memory_mib << 20}
  shared_memory_per_block_optin: {g.smem_per_block_optin}
  cuda_compute_capability {{ major: {g.compute_capability[0]} minor: {g.compute_capability[1]} }}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: {CUDNN[0]} minor: {CUDNN[1]} }}
runtime_version {{ major: {CUDA[0]} minor: {CUDA[1]} }}
device_description_str: "{g.description}"
"""


def _gpu(device_kind: str) -> Gpu:
    """The card whose description JAX reports as `device_kind`."""
    for g in GPUS.values():
        if g.description == device_kind:
            return g
    raise CompileTargetError(f"unknown GPU {device_kind!r} (known: "
                             f"{', '.join(g.description for g in GPUS.values())})")


def memory_bytes(device_kind: str) -> float:
    """The card's memory in bytes, by the device_kind JAX reports."""
    return float(_gpu(device_kind).memory_mib << 20)


def plugin_in_environment() -> bool:
    """Whether JAX's CUDA plugin is installed where this process imports from (jax[cuda] on a GPU
    host); else the one of .venv/gpu-compiler is loaded."""
    for name in ("jax_plugins.xla_cuda13", "jax_plugins.xla_cuda12"):
        try:
            if importlib.util.find_spec(name):
                return True
        except ModuleNotFoundError:  # no jax_plugins package at all
            return False
    return False


def bundled_plugin_installed() -> bool:
    """Whether `make gpu-compiler` put the plugin in .venv/gpu-compiler."""
    return os.path.isdir(os.path.join(os.path.abspath(GPU_COMPILER_DIR), "jax_plugins", "xla_cuda13"))


def _load_plugin() -> None:
    """Registers the CUDA plugin from .venv/gpu-compiler unless the environment has one (which
    JAX's plugin discovery registers). Before JAX's backends start: its discovery then runs the
    hooks other modules left for plugins (the custom-call partitioner a sharded cuDNN call needs).
    The process then runs on the CPU (jax_platforms=cpu): there is no GPU for the plugin here."""
    import jax
    from jax._src import xla_bridge

    if plugin_in_environment():
        return
    if not bundled_plugin_installed():
        raise CompileTargetError("JAX's CUDA plugin is not installed: `make gpu-compiler` (pip install "
                                 "jax-cuda13-plugin and jax-cuda13-pjrt into .venv/gpu-compiler)")
    if xla_bridge.backends_are_initialized():
        raise CompileTargetError("the GPU compiler must be loaded before JAX starts its backends: call "
                                 "gpu_devices before anything asks JAX for devices")
    jax.config.update("jax_platforms", "cpu")  # also skips the plugin's check of CUDA libraries
    path = os.path.abspath(GPU_COMPILER_DIR)
    sys.path.append(path)
    try:
        importlib.import_module("jax_plugins.xla_cuda13").initialize()
    except Exception as e:  # the plugin's own refusals (its XLA_PYTHON_CLIENT_* settings, ...)
        raise CompileTargetError(f"JAX's CUDA plugin did not load: {str(e).splitlines()[0]}") from None
    finally:
        sys.path.remove(path)


def gpu_devices(spec: str) -> list:
    """The devices of `spec`'s GPUs (nodes x GPUs per node), no GPU needed."""
    from jax.experimental import topologies

    from slmjax.train.aot import gpu_memory_fraction

    kind, nodes, per_node = parse(spec)
    gpu_memory_fraction()  # a bad memory fraction is named before the plugin reads it
    _load_plugin()
    try:
        desc = topologies.get_topology_desc(platform="cuda", target_config=target_config(kind),
                                            topology=f"1x{nodes}x{per_node}")
    except Exception as e:  # the plugin's refusals are RuntimeErrors / XlaRuntimeErrors
        raise CompileTargetError(f"--gpu={spec}: the CUDA plugin has no such layout: {str(e).splitlines()[0]}")
    return list(desc.devices)


@contextlib.contextmanager
def answer_as(device_kind: str):
    """jax's cuDNN attention asks the local cuDNN for its version and the local GPU for its compute
    capability while it traces; with no GPU here, they are answered for `device_kind` (cuDNN CUDNN)."""
    from jax._src.cudnn import fused_attention_stablehlo as cudnn

    cc = _gpu(device_kind).compute_capability
    answers = {"check_cudnn_version": lambda: CUDNN[0] * 10000 + CUDNN[1] * 100,
               "check_compute_capability": lambda c: cc >= tuple(int(x) for x in c.split(".")),
               "is_cuda_compute_capability_equal": lambda c: cc == tuple(int(x) for x in c.split("."))}
    before = {name: getattr(cudnn, name) for name in answers}
    for name, fn in answers.items():
        setattr(cudnn, name, fn)
    try:
        yield
    finally:
        for name, fn in before.items():
            setattr(cudnn, name, fn)
