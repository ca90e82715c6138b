"""The platform the model is traced for: the running backend, or the one a deviceless
compilation targets (tools/compile_step.py traces the TPU or GPU program on a CPU-only host)."""

from __future__ import annotations

import contextlib

import jax

_target: str | None = None


def backend() -> str:
    """"cpu", "gpu" or "tpu": what the traced program will run on."""
    return _target or jax.default_backend()


@contextlib.contextmanager
def target(platform: str):
    """Trace the model for `platform` ("cpu", "gpu" or "tpu") whatever this process runs on.

    Only traces made inside the context see it: a function jitted and traced before is not traced
    again (jit's cache knows nothing of the target), so build the jitted function inside.
    """
    global _target
    if platform not in ("cpu", "gpu", "tpu"):
        raise ValueError(f"unknown platform {platform!r}: expected cpu, gpu or tpu")
    before, _target = _target, platform
    try:
        yield
    finally:
        _target = before
