"""Pure-functional front of the NNX model: params are a nested dict of arrays, apply is a function."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx
from flax.core import spmd as flax_spmd

from slmjax.model.config import ModelConfig
from slmjax.model.partitioning import logical_to_spec
from slmjax.model.transformer import Transformer


# Every logical axis name a parameter may carry.
LOGICAL_AXES = ("vocab", "embed", "heads", "head_dim", "mlp", "norm")


def _str_keys(tree):
    if isinstance(tree, dict):
        return {str(k): _str_keys(v) for k, v in tree.items()}
    return tree


def _build(cfg: ModelConfig, key) -> Transformer:
    with nnx.use_eager_sharding(False):
        return Transformer(cfg, nnx.Rngs(params=key))


@functools.lru_cache(maxsize=32)
def _skeleton(cfg: ModelConfig):
    """(graphdef, abstract param State, logical axes as a pure dict) of a config."""
    # Logical names map to None here so that nnx.eval_shape under a mesh never reads them as mesh
    # axes; the real shardings come from the caller's rules.
    with flax_spmd.logical_axis_rules(tuple((n, None) for n in LOGICAL_AXES)):
        abstract = nnx.eval_shape(lambda: _build(cfg, jax.random.key(0)))
    graphdef, state = nnx.split(abstract, nnx.Param)
    axes = jax.tree.map(lambda v: tuple(v.get_metadata()["out_sharding"]), state,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))
    return graphdef, state, _str_keys(nnx.to_pure_dict(axes))


def param_logical_axes(cfg: ModelConfig) -> dict:
    """The params tree with, at each leaf, the tuple of logical axis names of that parameter."""
    return _skeleton(cfg)[2]


def abstract_params(cfg: ModelConfig) -> dict:
    """The params tree of jax.ShapeDtypeStruct (no memory allocated)."""
    return jax.eval_shape(lambda: build_params(cfg, jax.random.key(0)))


def build_params(cfg: ModelConfig, key) -> dict:
    """Traceable init (use inside jax.jit; `init_params` is the eager, sharding-aware front)."""
    _, state = nnx.split(_build(cfg, key), nnx.Param)
    return _str_keys(nnx.to_pure_dict(state))


def param_shardings(cfg: ModelConfig, mesh, rules) -> dict:
    """NamedSharding of every parameter (same tree as the params) under logical-axis `rules`."""
    return jax.tree.map(
        lambda axes, s: jax.sharding.NamedSharding(mesh, logical_to_spec(axes, s.shape, mesh, rules)),
        param_logical_axes(cfg), abstract_params(cfg), is_leaf=lambda x: isinstance(x, tuple))


def init_params(cfg: ModelConfig, key) -> dict:
    """Random params of the paper's init: N(0, 0.02); w3 and wo N(0, 0.02 / sqrt(2 n_layers)).

    Under `jax.set_mesh(mesh)` with flax logical-axis rules in context
    (`slmjax.train.sharding.axis_rules()`), the params are created sharded.
    """
    mesh, rules = jax.sharding.get_mesh(), flax_spmd.get_logical_axis_rules()
    shardings = None if mesh.empty or not rules else param_shardings(cfg, mesh, rules)
    return jax.jit(functools.partial(build_params, cfg), out_shardings=shardings)(key)


def forward(cfg: ModelConfig, params: dict, tokens, positions=None, segment_ids=None):
    """Float32 logits [B,T,V] of int tokens [B,T].

    positions: RoPE positions [B,T] (default 0..T-1, one [1,T] row for every sequence); segment_ids:
    [B,T], attention is masked across segments (packed sequences).
    """
    graphdef, abstract_state, _ = _skeleton(cfg)
    state = jax.tree.map(lambda x: x, abstract_state)  # fresh copy of the template
    nnx.replace_by_pure_dict(state, params)
    model = nnx.merge(graphdef, state)
    tokens = jnp.asarray(tokens)
    if positions is None:  # one row: [B,T] copies would be constant-folded into [B,T,H] tables
        positions = jnp.arange(tokens.shape[1])[None]
    return model(tokens, positions, segment_ids)
