"""A TPU slice's devices on a host without one, for the deviceless compilation (slmjax.train.aot).

libtpu's compiler runs on any x86-64 Linux host: given a topology ("v4:2x2x4", 16 chips) it lays
out the TPU devices, and the sharded step lowers and compiles for them as it would on the slice.

libtpu is looked up as a Python module, else under `.venv/tpu-compiler` of this checkout
(`make tpu-compiler` puts it there; outside the venv's import path, so that no other process of
this checkout starts a TPU runtime).
"""

from __future__ import annotations

import logging
import math
import os
import re

from slmjax.train.aot import CompileTargetError

LIBTPU_DIR = os.path.join(os.path.dirname(__file__), "..", "..", ".venv", "tpu-compiler")
HBM_GIB = {"TPU v4": 32, "TPU v5 lite": 16, "TPU v5": 95, "TPU v6 lite": 32}  # per chip, nominal
_ACCELERATOR = re.compile(r"^(v4|v5p|v5litepod|v5e|v6e)-([1-9][0-9]*)$")
_TOPOLOGY = re.compile(r"^(v4|v5p|v5e|v6e):[1-9][0-9]*(x[1-9][0-9]*){1,2}$")


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
        raise CompileTargetError(f"--tpu={tpu!r}: not an accelerator type (v4-32, v5p-16, v5e-16, "
                                 "v5litepod-16, v6e-8) nor a topology (v4:2x2x4)")
    gen, n = m[1], int(m[2])
    chips = n // 2 if gen in ("v4", "v5p") else n  # v4/v5p count TensorCores, two per chip
    dims = [1, 1, 1] if gen in ("v4", "v5p") else [1, 1]
    if chips < 4 or chips & (chips - 1):
        raise CompileTargetError(f"--tpu={tpu}: {chips} chips; a slice of 4, 8, 16, ... chips (a power "
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
    raise CompileTargetError("libtpu is not installed: `make tpu-compiler` (pip install libtpu into "
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
        raise CompileTargetError(f"--tpu={tpu}: libtpu has no topology {name}: {str(e).splitlines()[0]}")
