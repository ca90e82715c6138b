"""Pure-functional front of the NNX model: params are a nested dict of arrays, apply is a function."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx
from flax.core import spmd as flax_spmd

from slmjax.model.config import ModelConfig
from slmjax.model.transformer import Transformer


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
    return jax.eval_shape(lambda: _init(cfg, jax.random.key(0)))


def _init(cfg: ModelConfig, key) -> dict:
    _, state = nnx.split(_build(cfg, key), nnx.Param)
    return _str_keys(nnx.to_pure_dict(state))


def _mesh_shardings(cfg: ModelConfig):
    """NamedShardings from flax logical-axis rules when a mesh and rules are both in context."""
    mesh = jax.sharding.get_abstract_mesh()
    rules = flax_spmd.get_logical_axis_rules()
    if mesh.empty or not rules:
        return None
    table = dict(rules)
    shapes = abstract_params(cfg)

    def spec(axes, shape):
        out = []
        for name, size in zip(axes, shape.shape):
            target = table.get(name)
            axes_t = (target,) if isinstance(target, str) else tuple(target or ())
            n = 1
            for a in axes_t:
                n *= mesh.shape[a]
            out.append(target if target and size % n == 0 else None)
        return jax.sharding.NamedSharding(jax.sharding.get_mesh(), jax.sharding.PartitionSpec(*out))

    return jax.tree.map(spec, param_logical_axes(cfg), shapes,
                        is_leaf=lambda x: isinstance(x, tuple))


def init_params(cfg: ModelConfig, key) -> dict:
    """Random params of the paper's init: N(0, 0.02); w3 and wo N(0, 0.02 / sqrt(2 n_layers)).

    Under `jax.set_mesh(mesh)` with flax logical-axis rules in context
    (`slmjax.train.sharding.axis_rules()`), the params are created sharded.
    """
    return jax.jit(functools.partial(_init, cfg), out_shardings=_mesh_shardings(cfg))(key)


def forward(cfg: ModelConfig, params: dict, tokens, positions=None, segment_ids=None):
    """Float32 logits [B,T,V] of int tokens [B,T].

    positions: RoPE positions [B,T] (default 0..T-1); segment_ids: [B,T], attention is masked
    across segments (packed sequences).
    """
    graphdef, abstract_state, _ = _skeleton(cfg)
    state = jax.tree.map(lambda x: x, abstract_state)  # fresh copy of the template
    nnx.replace_by_pure_dict(state, params)
    model = nnx.merge(graphdef, state)
    tokens = jnp.asarray(tokens)
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    return model(tokens, positions, segment_ids)
