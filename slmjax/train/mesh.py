"""The device mesh: axes (data, fsdp, tensor)."""

from __future__ import annotations

import jax

from slmjax import hostdevices
from slmjax.train.validate import mesh_shape

AXES = ("data", "fsdp", "tensor")


def make_mesh(mesh_cfg, devices=None) -> jax.sharding.Mesh:
    """Mesh with axes data, fsdp, tensor from `config.mesh` (-1 fills the remaining devices).

    Axes are Auto: XLA propagates shardings from the annotated params and batch, which is how
    FSDP and tensor parallelism are expressed here.
    """
    devices = list(devices) if devices is not None else jax.devices()
    holder = mesh_cfg if hasattr(mesh_cfg, "data") else dict(mesh_cfg)
    shape = mesh_shape({"mesh": holder}, len(devices))
    return jax.make_mesh(tuple(shape[a] for a in AXES), AXES,
                         axis_types=(jax.sharding.AxisType.Auto,) * 3, devices=devices)


def _laid_out_by_hand(config) -> bool:
    return any(int(config.mesh[a]) not in (1, -1) for a in AXES)


def cpu_split(config) -> int:
    """Devices to split a CPU-only host into for `config` (slmjax.hostdevices): `mesh.cpu_devices`,
    or for 0 (auto) one per core, as many as divide the per-update micro-batch; 1 (no split) in
    auto mode when the mesh is laid out by hand (an axis other than 1 or -1)."""
    n = int(config.mesh.get("cpu_devices", 0))
    if n:
        return n
    if _laid_out_by_hand(config):
        return 1
    t = config.train
    rows = t.batch_size // t.micro_batches if t.micro_batches > 0 else t.batch_size
    return hostdevices.largest_divisor(int(rows), hostdevices.host_cores())


def request_cpu_split(config) -> int:
    """Asks JAX for `cpu_split(config)` CPU devices; call before JAX's backends start. Returns the
    count asked for (1: none)."""
    return hostdevices.request(cpu_split(config))


def adopt_cpu_split(config, n: int) -> None:
    """Once JAX runs: when the program is on the CPU split into n devices and the mesh is not laid
    out by hand, the devices go to the data axis (FSDP over them: 6-11% slower per step)."""
    if hostdevices.split_in_use(n) and not _laid_out_by_hand(config):
        config.mesh.update(data=-1, fsdp=1, tensor=1)
