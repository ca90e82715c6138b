"""A CPU-only host split into one JAX device per core.

XLA runs a CPU device's program one operation at a time, each spread over every core; the small
operations and the waits at the end of each one leave cores idle. With the host split into one
device per core and the batch spread over them (data parallelism), the devices' programs run side
by side and fill each other's gaps. Measured on a 2-core host (one process, steps of the two
layouts interleaved, tcmalloc), ms per training step, min / median:

    tiny (batch 16 x 128)          one device 83.3 / 85.0     two devices 58.0 / 58.2
    s20m (batch 8 x 512)           3900 / 4148                3543 / 3578
    s20m (batch 4 x 2050)          8570 / 9852                8433 / 8583

The two devices also hold their speed when other jobs load the machine, where one device loses
10-40% in some steps. FSDP over the two devices instead: 8993 / 9538 at s20m (batch 4 x 2050).

The split must be asked for before JAX starts its backends, so commands call `request` first
thing. A device count the user forces (XLA_FLAGS=--xla_force_host_platform_device_count=N or
JAX_NUM_CPU_DEVICES) is left alone, and so is a host with a JAX TPU/GPU plugin installed or
JAX_PLATFORMS naming another platform (the program runs there, not on the CPU).
"""

from __future__ import annotations

import os

_FORCE_FLAG = "xla_force_host_platform_device_count"


def host_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def forced_by_user(environ=None) -> bool:
    """True when the environment already fixes JAX's CPU device count."""
    env = os.environ if environ is None else environ
    return _FORCE_FLAG in env.get("XLA_FLAGS", "") or bool(env.get("JAX_NUM_CPU_DEVICES"))


def largest_divisor(n: int, limit: int) -> int:
    """The largest divisor of n that is <= limit (1 when n or limit < 1)."""
    return max([d for d in range(1, min(n, limit) + 1) if n % d == 0] or [1])


def accelerator_installed() -> bool:
    """True when a JAX TPU/GPU plugin is installed or JAX_PLATFORMS names another platform first:
    the program will not run on the CPU, and the host is not split."""
    import pkgutil

    first = os.environ.get("JAX_PLATFORMS", "").split(",")[0].strip()
    if first:
        return first != "cpu"
    prefixes = ("libtpu", "jax_cuda", "jax_rocm", "jax_plugins")
    return any(m.name.startswith(prefixes) for m in pkgutil.iter_modules())


def request(n: int) -> int:
    """Ask JAX for n CPU devices; returns the count asked for, or 1 when nothing was asked (n <= 1,
    the user fixed the count, or an accelerator will run the program). Raises RuntimeError if
    JAX's backends are already running."""
    if n <= 1 or forced_by_user() or accelerator_installed():
        return 1
    import jax

    jax.config.update("jax_num_cpu_devices", int(n))
    return int(n)


def split_in_use(n: int) -> bool:
    """True when the program runs on the CPU and the host was split into the n devices asked for."""
    import jax

    return n > 1 and jax.default_backend() == "cpu" and jax.local_device_count() == n
