"""Logical axis names -> PartitionSpecs, and the sharding constraints the model puts on its
activations while a step is traced under a mesh.

Parameters say how they are sharded (their logical axes); activations must say so too. Left to
XLA's propagation, an FSDP step may keep each weight sharded and gather the *activations*
instead: compiled for 16 TPU v4 chips, the s20m step computed the whole batch's attention on
every chip (6.9x the FLOPs per chip, 23 GB of temporaries for one sequence per chip). The
constraints below pin the batch dimension of every block's input and of q, k, v and the
attention output to the batch axes, so it is the weights that are gathered.
"""

from __future__ import annotations

import jax
from flax.core import spmd as flax_spmd

# Logical axes of the activations the model constrains.
RESIDUAL = ("batch", None, None)          # [B, T, D]
HEADS = ("batch", None, "heads", None)    # [B, T, N, H]


def logical_to_spec(axes, shape, mesh, rules) -> jax.sharding.PartitionSpec:
    """PartitionSpec of an array with logical `axes` under `rules` ((logical, mesh axes) pairs).

    Mesh axes of size 1 (or not in the mesh) are dropped; a dimension whose size is not
    divisible by its mesh axes stays replicated.
    """
    table = dict(rules)
    spec = []
    for name, size in zip(axes, shape):
        target = table.get(name)
        names = (target,) if isinstance(target, str) else tuple(target or ())
        names = tuple(a for a in names if mesh.shape.get(a, 1) > 1)  # size-1 axes shard nothing
        n = 1
        for a in names:
            n *= mesh.shape[a]
        if not names or size % n:
            spec.append(None)
        else:
            spec.append(names[0] if len(names) == 1 else names)
    return jax.sharding.PartitionSpec(*spec)


def context_spec(axes, shape):
    """(abstract mesh, PartitionSpec of `shape` with logical `axes`) when a mesh of more than one
    device and the logical-axis rules are in context (slmjax.train.sharding.model_context);
    (None, None) otherwise, and inside `shard_map` (manual axes: the arrays are per device)."""
    mesh, rules = jax.sharding.get_abstract_mesh(), flax_spmd.get_logical_axis_rules()
    if mesh.empty or mesh.size == 1 or not rules or jax.sharding.AxisType.Manual in mesh.axis_types:
        return None, None
    return mesh, logical_to_spec(axes, shape, mesh, rules)


def constrain(x, axes):
    """`x` constrained to its logical `axes` under the mesh in context; `x` itself without one."""
    mesh, spec = context_spec(axes, x.shape)
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(mesh, spec))


def per_device_heads(fn, q, k, v, segment_ids=None, check_vma: bool = True):
    """`fn(q, k, v, segment_ids)` (q, k, v [B, T, N, H]; segment_ids [B, T] or None) on each
    device's own sequences and heads (`shard_map`) under a mesh in context, so that a kernel XLA
    cannot partition (a loop, a Pallas call) keeps a sharded batch sharded; on the whole arrays
    without one. check_vma=False for a Pallas call (its outputs carry no mesh-axis types)."""
    mesh, spec = context_spec(HEADS, q.shape)
    if mesh is None:
        return fn(q, k, v, segment_ids)
    kw = {"mesh": mesh, "out_specs": spec, "check_vma": check_vma}
    if segment_ids is None:
        return jax.shard_map(lambda q, k, v: fn(q, k, v, None), in_specs=(spec,) * 3, **kw)(q, k, v)
    return jax.shard_map(fn, in_specs=(spec,) * 3 + (jax.sharding.PartitionSpec(spec[0]),),
                         **kw)(q, k, v, segment_ids)
