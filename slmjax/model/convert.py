"""Import and export of the paper's PyTorch release (parameter names in PAPER.md).

PyTorch Linear weights are (out_features, in_features); ours are (in, out) with the attention
projections split into heads: wq/wk/wv [dim, heads, head_dim], wo [heads, head_dim, dim].
`output.weight` is tied to `tok_embeddings.weight` (absent from the release's safetensors; a file
that holds only `output.weight` is read with it as the embedding).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from slmjax import fileio
from slmjax.errortext import describe
from slmjax.model.config import ModelConfig


class CheckpointFormatError(ValueError):
    """A checkpoint that does not match the paper's release format (one-line message)."""


_LAYER = re.compile(r"^layers\.(\d+)\.")
_SHARD = re.compile(r"^model-\d+-of-\d+\.safetensors$")
# The release's RoPE base: fixed in its code, not a field of its ModelArgs (whose from_pretrained
# refuses any model_args key it does not know).
RELEASE_ROPE_THETA = 10000.0


def _strip(name: str) -> str:
    """The name without wrapper prefixes (torch.compile, DDP, ...), nested in any order."""
    while (prefix := next((p for p in ("_orig_mod.", "module.", "model.") if name.startswith(p)),
                          None)):
        name = name[len(prefix):]
    return name


def _unwrapped(state_dict: dict, value=lambda name, v: v) -> dict:
    """name -> value(name, v) with the names stripped of wrapper prefixes; two names that become
    one (a state dict holding both 'model.x' and 'x') are refused rather than one dropped."""
    sd, source = {}, {}
    for k, v in state_dict.items():
        name = _strip(k)
        if name in source:
            raise CheckpointFormatError(f"checkpoint names {source[name]!r} and {k!r} are one "
                                        "parameter once wrapper prefixes are removed: which to load is unclear")
        source[name], sd[name] = k, value(name, v)
    return _tied(sd)


def _tied(sd: dict) -> dict:
    """sd with 'tok_embeddings.weight' taken from 'output.weight' when only the latter is there:
    the two are one tensor, and safetensors.torch.save_model keeps a shared tensor under its
    alphabetically first name, which for the release's model is 'output.weight'."""
    if "tok_embeddings.weight" not in sd and "output.weight" in sd:
        sd = {**sd, "tok_embeddings.weight": sd["output.weight"]}
    return sd


def infer_config(state_dict: dict, head_dim: int = 64, **overrides) -> ModelConfig:
    """ModelConfig from tensor shapes (head_dim 64 as in every paper size unless n_heads given)."""
    sd = _unwrapped(state_dict)
    if "tok_embeddings.weight" not in sd:
        raise CheckpointFormatError("state dict has no 'tok_embeddings.weight': not the paper's format")
    vocab, dim = np.shape(sd["tok_embeddings.weight"])
    if "n_heads" not in overrides and dim % head_dim:
        raise CheckpointFormatError(f"dim {dim} is not a multiple of head_dim {head_dim}: the "
                                    "head count cannot be read off the shapes; pass n_heads")
    n_layers = 1 + max((int(m.group(1)) for k in sd if (m := _LAYER.match(k))), default=-1)
    w1 = sd.get("layers.0.feed_forward.w1.weight")  # when absent, the import names it
    hidden = np.shape(w1)[0] if w1 is not None else None
    fields = dict(vocab_size=int(vocab), dim=int(dim), n_layers=n_layers,
                  n_heads=int(dim) // head_dim, hidden_dim=int(hidden) if hidden else None)
    fields.update(overrides)
    cfg = ModelConfig(**fields)
    if problems := cfg.problems():  # an n_heads given that does not divide the width, ...
        raise CheckpointFormatError("; ".join(problems))
    return cfg


def import_state_dict(state_dict: dict, cfg: ModelConfig | None = None) -> tuple[ModelConfig, dict]:
    """(cfg, params) from a dict name -> array in the paper's PyTorch naming."""
    sd = _unwrapped(state_dict, _float32)
    cfg = cfg or infer_config(sd)
    d, n, h = cfg.dim, cfg.n_heads, cfg.head_dim
    expected = {k: tuple(v) for k, v in export_shapes(cfg).items()}
    for name, shape in expected.items():
        if name not in sd:
            raise CheckpointFormatError(f"checkpoint lacks {name!r} (expected shape {shape})")
        if sd[name].shape != shape:
            raise CheckpointFormatError(f"{name!r} has shape {sd[name].shape}, expected {shape}")
    extra = sorted(set(sd) - set(expected) - {"output.weight"} - {k for k in sd if k.endswith("freqs_cis")})
    if extra:
        raise CheckpointFormatError(f"checkpoint has unexpected tensors: {', '.join(extra[:5])}")
    if "output.weight" in sd and not np.array_equal(sd["output.weight"], sd["tok_embeddings.weight"],
                                                    equal_nan=True):  # one tensor, NaNs included
        raise CheckpointFormatError("output.weight differs from tok_embeddings.weight: not tied")
    layers = {}
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        layers[str(i)] = {
            "attention": {
                "wq": sd[p + "attention.wq.weight"].T.reshape(d, n, h),
                "wk": sd[p + "attention.wk.weight"].T.reshape(d, n, h),
                "wv": sd[p + "attention.wv.weight"].T.reshape(d, n, h),
                "wo": sd[p + "attention.wo.weight"].T.reshape(n, h, d),
            },
            "feed_forward": {
                "w1": sd[p + "feed_forward.w1.weight"].T,
                "w2": sd[p + "feed_forward.w2.weight"].T,
                "w3": sd[p + "feed_forward.w3.weight"].T,
            },
            "attention_norm": {"scale": sd[p + "attention_norm.weight"]},
            "ffn_norm": {"scale": sd[p + "ffn_norm.weight"]},
        }
    params = {"tok_embeddings": sd["tok_embeddings.weight"], "layers": layers,
              "norm": {"scale": sd["norm.weight"]}}
    params = _to_dtype(params, cfg.param_dtype)
    return cfg, params


def _float32(name: str, value) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "is_floating_point"):  # a torch tensor:
        value = value.detach().cpu()  # numpy() refuses one that requires grad, and bfloat16
        value = (value.float() if value.is_floating_point() else value).numpy()
    a = np.asarray(value)
    if a.dtype.kind in "biuc":
        raise CheckpointFormatError(f"{name!r} has dtype {a.dtype}, not a floating-point weight")
    return a.astype(np.float32)


def _to_dtype(tree, dtype: str):
    if isinstance(tree, dict):
        return {k: _to_dtype(v, dtype) for k, v in tree.items()}
    import jax.numpy as jnp  # numpy has no bfloat16; jnp.dtype resolves it through ml_dtypes

    return np.ascontiguousarray(tree.astype(jnp.dtype(dtype)))


def export_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and (PyTorch) shapes of the release's tensors, output.weight excluded (tied)."""
    d, f, nh = cfg.dim, cfg.ffn_dim, cfg.n_heads * cfg.head_dim
    out = {"tok_embeddings.weight": (cfg.vocab_size, d)}
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        out.update({p + "attention.wq.weight": (nh, d), p + "attention.wk.weight": (nh, d),
                    p + "attention.wv.weight": (nh, d), p + "attention.wo.weight": (d, nh),
                    p + "feed_forward.w1.weight": (f, d), p + "feed_forward.w2.weight": (d, f),
                    p + "feed_forward.w3.weight": (f, d), p + "attention_norm.weight": (d,),
                    p + "ffn_norm.weight": (d,)})
    out["norm.weight"] = (d,)
    return out


def export_state_dict(cfg: ModelConfig, params: dict, include_output: bool = False) -> dict:
    """Params -> dict name -> float32 numpy array in the paper's PyTorch naming and layout."""
    g = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731
    d, nh = cfg.dim, cfg.n_heads * cfg.head_dim
    sd = {"tok_embeddings.weight": g(params["tok_embeddings"])}
    for i in range(cfg.n_layers):
        lp, p = params["layers"][str(i)], f"layers.{i}."
        for w in ("wq", "wk", "wv"):
            sd[p + f"attention.{w}.weight"] = g(lp["attention"][w]).reshape(d, nh).T.copy()
        sd[p + "attention.wo.weight"] = g(lp["attention"]["wo"]).reshape(nh, d).T.copy()
        for w in ("w1", "w2", "w3"):
            sd[p + f"feed_forward.{w}.weight"] = g(lp["feed_forward"][w]).T.copy()
        sd[p + "attention_norm.weight"] = g(lp["attention_norm"]["scale"])
        sd[p + "ffn_norm.weight"] = g(lp["ffn_norm"]["scale"])
    sd["norm.weight"] = g(params["norm"]["scale"])
    if include_output:
        sd["output.weight"] = sd["tok_embeddings.weight"]
    return sd


def config_from_model_args(args: dict, **overrides) -> ModelConfig:
    """ModelConfig from the release's config.json `model_args`."""
    if not isinstance(args, dict):
        raise CheckpointFormatError("'model_args' is not an object")
    missing = [k for k in ("dim", "n_layers", "n_heads", "vocab_size") if args.get(k) is None]
    if missing:
        raise CheckpointFormatError(f"model_args lacks {', '.join(map(repr, missing))}")
    if args.get("n_kv_heads") not in (None, args.get("n_heads")):
        raise CheckpointFormatError(
            f"n_kv_heads={args['n_kv_heads']} != n_heads={args.get('n_heads')}: grouped-query "
            "attention is not part of the paper's model")
    if args.get("prefix_vocab_size") is not None:
        raise CheckpointFormatError(f"prefix_vocab_size={args['prefix_vocab_size']}: prefix "
                                    "tokens are not part of the paper's model")
    fields = dict(vocab_size=args["vocab_size"], dim=args["dim"], n_layers=args["n_layers"],
                  n_heads=args["n_heads"], hidden_dim=args.get("hidden_dim"),
                  multiple_of=args.get("multiple_of") or 256,
                  norm_eps=1e-5 if args.get("norm_eps") is None else args["norm_eps"],
                  rope_theta=args.get("rope_theta") or RELEASE_ROPE_THETA,
                  max_seq_len=(args.get("block_size") or args.get("max_block_size")
                               or args.get("max_seq_len") or 2050))
    fields.update(overrides)
    cfg = ModelConfig(**fields)
    if problems := cfg.problems():
        raise CheckpointFormatError("; ".join(problems))
    return cfg


def model_args_of(cfg: ModelConfig) -> dict:
    """The release's config.json `model_args` of cfg. A RoPE base other than the release's fixed
    one is written as `rope_theta`, which this module reads back and the release refuses."""
    args = {"dim": cfg.dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "n_kv_heads": None,
            "vocab_size": cfg.vocab_size, "hidden_dim": cfg.hidden_dim or None,  # 0: the rule
            "multiple_of": cfg.multiple_of, "norm_eps": cfg.norm_eps,
            "block_size": cfg.max_seq_len, "dropout": 0.0}
    if cfg.rope_theta != RELEASE_ROPE_THETA:
        args["rope_theta"] = cfg.rope_theta
    return args


def _read_safetensors(path: str) -> dict:
    from safetensors.numpy import load_file

    return load_file(path)


def _read_torch(path: str) -> tuple[dict, dict | None]:
    """(state dict, the checkpoint's `model_args` when it has them, as the release's do)."""
    import torch

    # The release's training checkpoints (checkpoint-*.pt) also hold numpy RNG states, uint32
    # arrays: numpy arrays (data, no code) pass the weights-only unpickler, under numpy 2's name
    # for their constructor and numpy 1's.
    rebuild = np._core.multiarray._reconstruct
    arrays = [rebuild, (rebuild, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
              type(np.dtype(np.uint32))]
    with torch.serialization.safe_globals(arrays):
        obj = torch.load(path, map_location="cpu", weights_only=True)
    args = obj.get("model_args") if isinstance(obj, dict) else None
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointFormatError(f"{path}: not a state dict")
    sd = {k: (v.float() if v.is_floating_point() else v).numpy()
          for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return sd, args if isinstance(args, dict) else None


def _read_tensors(path: str) -> tuple[dict, dict | None]:
    """(tensors, model_args or None) of a .safetensors or torch file; CheckpointFormatError when
    it cannot be read."""
    if not os.path.exists(path):
        raise CheckpointFormatError(f"{path}: no such file or directory")
    try:
        if path.endswith(".safetensors"):
            return _read_safetensors(path), None
        return _read_torch(path)
    except CheckpointFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the reader raises, one line
        raise CheckpointFormatError(f"{path}: not a release checkpoint ({describe(e)})") from None


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointFormatError(f"{path}: not readable JSON ({e})") from None


def _dir_config(path: str, overrides: dict) -> ModelConfig:
    cfg_path = os.path.join(path, "config.json")
    if not os.path.exists(cfg_path):
        raise CheckpointFormatError(f"{path}: no config.json")
    meta = _read_json(cfg_path)
    if not isinstance(meta, dict) or "model_args" not in meta:
        raise CheckpointFormatError(f"{cfg_path}: no 'model_args'")
    if meta.get("format_version", 1) != 1:
        raise CheckpointFormatError(f"{cfg_path}: format_version {meta['format_version']!r}; the "
                                    "release's format is 1")
    try:
        return config_from_model_args(meta["model_args"], **overrides)
    except CheckpointFormatError as e:
        raise CheckpointFormatError(f"{cfg_path}: {e}") from None


def load_release_checkpoint(path: str, **overrides) -> tuple[ModelConfig, dict]:
    """(cfg, params) from the release's directory (config.json + model.safetensors, or a sharded
    model-0000K-of-0000N.safetensors + model.safetensors.index.json), a .safetensors file, or a
    torch state-dict file (.pt/.pth/.bin). Anything else: CheckpointFormatError, one line."""
    if os.path.isdir(path):
        cfg = _dir_config(path, overrides)
        index = os.path.join(path, "model.safetensors.index.json")
        if os.path.exists(index) and os.path.exists(os.path.join(path, "model.safetensors")):
            raise CheckpointFormatError(f"{path}: both model.safetensors and its index: which "
                                        "weights are meant is ambiguous")
        if os.path.exists(index):
            weight_map = _read_json(index)
            weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
            if not isinstance(weight_map, dict):
                raise CheckpointFormatError(f"{index}: no 'weight_map' object")
            sd = {}
            for name in sorted(set(weight_map.values())):
                sd.update(_read_tensors(os.path.join(path, name))[0])
        elif os.path.exists(os.path.join(path, "model.safetensors")):
            sd = _read_tensors(os.path.join(path, "model.safetensors"))[0]
        else:
            raise CheckpointFormatError(f"{path}: neither model.safetensors nor its index")
        return import_state_dict(sd, cfg)
    sd, args = _read_tensors(path)
    if args is not None:  # a release training checkpoint: its config, not a guess from shapes
        try:
            return import_state_dict(sd, config_from_model_args(args, **overrides))
        except CheckpointFormatError as e:
            raise CheckpointFormatError(f"{path}: {e}") from None
    return import_state_dict(sd, infer_config(sd, **overrides) if overrides else None)


def save_release_checkpoint(path: str, cfg: ModelConfig, params: dict) -> None:
    """Write the release's directory format (config.json + model.safetensors), atomically. A
    directory that holds sharded weights (model.safetensors.index.json, model-0000K-of-0000N.
    safetensors) is refused: model.safetensors beside them is ambiguous to every loader."""
    from safetensors.numpy import save_file

    sharded = sorted(n for n in (os.listdir(path) if os.path.isdir(path) else ())
                     if n == "model.safetensors.index.json" or _SHARD.match(n))
    if sharded:
        raise CheckpointFormatError(f"{path} already holds sharded weights ({', '.join(sharded[:3])}): "
                                    "model.safetensors beside them would be ambiguous; use "
                                    "another directory")
    os.makedirs(path, exist_ok=True)
    sd = export_state_dict(cfg, params)
    with fileio.atomic_path(os.path.join(path, "model.safetensors")) as tmp:
        save_file(sd, tmp)
    meta = {"format_version": 1, "model_args": model_args_of(cfg), "torch_dtype": "float32",
            "tied_weights": True}
    fileio.atomic_write_json(os.path.join(path, "config.json"), meta, indent=1)
