"""Logical-axis rules (the one table) and the shardings of params, optimizer state and batches.

Parameters are sharded FSDP-style over `fsdp` (their `embed` dimension) and Megatron-style over
`tensor` (attention heads, FFN hidden); batches over (`data`, `fsdp`). A dimension whose size is
not divisible by its mesh axes stays replicated (e.g. a 502-entry vocabulary).
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np
from flax.core import spmd as flax_spmd
from jax.sharding import NamedSharding, PartitionSpec as P

from slmjax.model import ModelConfig
from slmjax.model.partitioning import logical_to_spec as _logical_to_spec
from slmjax.model.functional import param_shardings as model_param_shardings

BATCH_AXES = ("data", "fsdp")

# logical axis -> mesh axes (None = replicated). The one table.
RULES: tuple[tuple[str, object], ...] = (
    ("batch", BATCH_AXES),  # examples of a batch
    ("vocab", None),  # embedding rows / logits (502 rarely divides a mesh axis)
    ("embed", "fsdp"),  # model width: FSDP shards of every weight matrix
    ("heads", "tensor"),  # attention heads: Megatron column/row parallel
    ("head_dim", None),
    ("mlp", "tensor"),  # SwiGLU hidden: Megatron column/row parallel
    ("norm", None),  # RMSNorm scales (tiny, replicated)
)


@contextlib.contextmanager
def axis_rules():
    """Context in which `slmjax.model.init_params` under `jax.set_mesh` creates sharded params."""
    with flax_spmd.logical_axis_rules(RULES):
        yield


@contextlib.contextmanager
def model_context(mesh):
    """The mesh and RULES as the model sees them while a step is traced: the CPU attention then
    loops over each device's own sequences and heads (shard_map) instead of the global batch."""
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), axis_rules():
        yield


def param_shardings(cfg: ModelConfig, mesh) -> dict:
    """NamedSharding of every parameter under RULES, same tree as the params."""
    return model_param_shardings(cfg, mesh, RULES)


def logical_to_spec(axes: tuple[str, ...], shape: tuple[int, ...], mesh) -> P:
    """PartitionSpec of an array with logical `axes` under RULES."""
    return _logical_to_spec(axes, shape, mesh, RULES)


def opt_state_shardings(tx, abstract_opt_state, p_shardings, mesh):
    """Shardings of an optax state: parameter-shaped leaves (mu, nu) like their parameters."""
    import optax

    replicated = NamedSharding(mesh, P())
    return optax.tree_map_params(
        tx, lambda _, s: s, abstract_opt_state, p_shardings,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, NamedSharding))


def batch_sharding(mesh) -> NamedSharding:
    """Sharding of [B, T] batch arrays: B over (data, fsdp)."""
    return NamedSharding(mesh, P(BATCH_AXES))


def process_rows(mesh, rows: int) -> tuple[int, int]:
    """(slot, slots): this process's devices hold rows [slot * n, (slot + 1) * n) of a global
    batch of `rows` rows, n = rows // slots, so it feeds those (slmjax.data's process_index and
    process_count). Processes whose devices hold the same rows, as when `tensor` spans hosts,
    share a slot and feed the same rows; one process is (0, 1). RunError (one line) when its rows
    are not one such block."""
    if jax.process_count() == 1:
        return 0, 1
    spans = sorted({(sl[0].start or 0, rows if sl[0].stop is None else sl[0].stop)
                    for sl in batch_sharding(mesh).addressable_devices_indices_map((rows, 1)).values()})
    lo, hi = spans[0][0], max(b for _, b in spans)
    reach = lo
    for a, b in spans:
        if a > reach:
            break
        reach = max(reach, b)
    n = hi - lo
    if reach < hi or rows % n or lo % n:
        from slmjax.train.run_files import RunError  # pylint: disable=g-import-not-at-top
        raise RunError(f"process {jax.process_index()}'s devices hold rows {spans} of each batch of "
                       f"{rows}, not one block of an equal split; lay the mesh out so that each "
                       "process's devices hold consecutive rows (mesh.data / mesh.fsdp over hosts)")
    return lo // n, rows // n


def make_global_batch(local: dict, mesh) -> dict:
    """Global jax.Arrays from this process's rows ([B_local, T] numpy per key), for multi-host."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local.items()}
