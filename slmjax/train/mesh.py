"""The device mesh: axes (data, fsdp, tensor)."""

from __future__ import annotations

import jax

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
