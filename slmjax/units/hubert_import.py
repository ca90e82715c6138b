"""Import HuBERT weights into :class:`~slmjax.units.hubert.HubertEncoder`.

Sources: a Hugging Face ``HubertModel`` directory or file (``model.safetensors`` or
``pytorch_model.bin`` with ``config.json``) or a fairseq HuBERT checkpoint (``.pt`` with ``model`` and
``cfg``/``args``). fairseq names are first renamed to HF names, then one table maps HF names to ours.

Checkpoints also say whether each utterance is normalised to zero mean and unit variance before the
model (HuBERT large/xlarge are trained so): fairseq's task ``normalize`` (``F.layer_norm``, eps 1e-5),
HF's ``preprocessor_config.json`` ``do_normalize`` (eps 1e-7), or, for an HF model without one, the
convention of HF's converter: normalised exactly when the feature extractor uses LayerNorm.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from slmjax.errortext import describe
from slmjax.units.errors import UnitsError
from slmjax.units.hubert import HubertConfig, HubertEncoder

_LAYER_MAP = {
    "attention.q_proj": "q", "attention.k_proj": "k", "attention.v_proj": "v", "attention.out_proj": "o",
    "layer_norm": "attn_norm", "final_layer_norm": "ffn_norm",
    "feed_forward.intermediate_dense": "ffn_in", "feed_forward.output_dense": "ffn_out",
}


def _np(t) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().float().numpy()
    return np.asarray(t, np.float32)


def hf_to_params(sd: dict, cfg: HubertConfig) -> dict:
    """HF HubertModel state dict -> {our dotted path: array}."""
    sd = {re.sub(r"^hubert\.", "", k): _np(v) for k, v in sd.items()}
    out, used = {}, set()

    def take(name):
        if name not in sd:
            raise UnitsError(f"HuBERT checkpoint lacks {name}")
        used.add(name)
        return sd[name]

    for i, (c_out, k) in enumerate(zip(cfg.conv_dim, cfg.conv_kernel)):
        p = f"feature_extractor.conv_layers.{i}"
        w = take(f"{p}.conv.weight")  # [out, in, k]
        out[f"convs.{i}.kernel"] = w.transpose(2, 1, 0)
        if cfg.conv_bias:
            out[f"convs.{i}.bias"] = take(f"{p}.conv.bias")
        if cfg.feat_extract_norm == "layer" or i == 0:
            out[f"convs.{i}.norm_scale"] = take(f"{p}.layer_norm.weight")
            out[f"convs.{i}.norm_bias"] = take(f"{p}.layer_norm.bias")
    if cfg.feat_proj_layer_norm:
        out["proj_norm.scale"] = take("feature_projection.layer_norm.weight")
        out["proj_norm.bias"] = take("feature_projection.layer_norm.bias")
    out["proj.kernel"] = take("feature_projection.projection.weight").T
    out["proj.bias"] = take("feature_projection.projection.bias")
    pc = "encoder.pos_conv_embed.conv"
    if f"{pc}.parametrizations.weight.original1" in sd:
        g, v = take(f"{pc}.parametrizations.weight.original0"), take(f"{pc}.parametrizations.weight.original1")
    elif f"{pc}.weight_v" in sd:
        g, v = take(f"{pc}.weight_g"), take(f"{pc}.weight_v")
    else:  # weight norm already folded into the weight
        v = take(f"{pc}.weight")
        g = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=(0, 1))).astype(np.float32)
    out["pos_conv.weight_v"], out["pos_conv.weight_g"] = v, g.reshape(-1)
    out["pos_conv.bias"] = take(f"{pc}.bias")
    out["enc_norm.scale"], out["enc_norm.bias"] = take("encoder.layer_norm.weight"), take("encoder.layer_norm.bias")
    for layer in range(cfg.num_hidden_layers):
        for hf, ours in _LAYER_MAP.items():
            w = take(f"encoder.layers.{layer}.{hf}.weight")
            out[f"layers.{layer}.{ours}.{'scale' if 'norm' in ours else 'kernel'}"] = w if "norm" in ours else w.T
            out[f"layers.{layer}.{ours}.bias"] = take(f"encoder.layers.{layer}.{hf}.bias")
    # encoder weights the config has no place for (more layers, conv biases or norms than it says)
    # would otherwise be dropped without a word, giving another model than the checkpoint's
    unused = sorted(k for k in sd if k not in used and k.startswith(("feature_extractor.", "feature_projection.", "encoder.")))
    if unused:
        raise UnitsError(f"HuBERT config does not match the checkpoint: {len(unused)} weight(s) it has no place for, "
                         f"first {unused[0]} (config: {cfg.num_hidden_layers} layers, {len(cfg.conv_dim)} convs, "
                         f"conv_bias={cfg.conv_bias}, feat_extract_norm={cfg.feat_extract_norm!r})")
    return out


def fairseq_to_hf(sd: dict, mode: str) -> dict:
    """Rename a fairseq HuBERT state dict to HF HubertModel names (``mode``: default|layer_norm)."""
    rules = [
        (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
        (r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.", r"feature_extractor.conv_layers.\1.layer_norm."),
        (r"^feature_extractor\.conv_layers\.(\d+)\.2\.", r"feature_extractor.conv_layers.\1.layer_norm."),
        (r"^post_extract_proj\.", "feature_projection.projection."),
        (r"^layer_norm\.", "feature_projection.layer_norm."),
        (r"^encoder\.pos_conv\.0\.", "encoder.pos_conv_embed.conv."),
        (r"^encoder\.layers\.(\d+)\.self_attn\.", r"encoder.layers.\1.attention."),
        (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"encoder.layers.\1.layer_norm."),
        (r"^encoder\.layers\.(\d+)\.fc1\.", r"encoder.layers.\1.feed_forward.intermediate_dense."),
        (r"^encoder\.layers\.(\d+)\.fc2\.", r"encoder.layers.\1.feed_forward.output_dense."),
    ]
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^(w2v_encoder\.w2v_model|hubert)\.", "", k)
        for pat, rep in rules:
            k2 = re.sub(pat, rep, k)
            if k2 != k:
                k = k2
                break
        out[k] = v
    return out


def fairseq_config(model_cfg: dict) -> HubertConfig:
    """HubertConfig from a fairseq HuBERT model config (dict or argparse namespace as dict)."""
    layers = eval(model_cfg.get("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"),
                  {"__builtins__": {}}, {})
    return HubertConfig(
        conv_dim=tuple(c for c, _, _ in layers), conv_kernel=tuple(k for _, k, _ in layers),
        conv_stride=tuple(s for _, _, s in layers), conv_bias=bool(model_cfg.get("conv_bias", False)),
        feat_extract_norm="layer" if model_cfg.get("extractor_mode", "default") == "layer_norm" else "group",
        feat_proj_layer_norm=True, hidden_size=int(model_cfg.get("encoder_embed_dim", 768)),
        num_hidden_layers=int(model_cfg.get("encoder_layers", 12)),
        num_attention_heads=int(model_cfg.get("encoder_attention_heads", 12)),
        intermediate_size=int(model_cfg.get("encoder_ffn_embed_dim", 3072)),
        num_conv_pos_embeddings=int(model_cfg.get("conv_pos", 128)),
        num_conv_pos_embedding_groups=int(model_cfg.get("conv_pos_groups", 16)),
        do_stable_layer_norm=bool(model_cfg.get("layer_norm_first", False)),
    )


def _torch_load(path: str, trusted: bool):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        if not trusted:
            raise
        return torch.load(path, map_location="cpu", weights_only=False)  # fairseq pickles its config objects


def read_checkpoint(path: str) -> tuple[HubertConfig, dict, float | None]:
    """(config, HF-named state dict, wave normalisation eps or None) from an HF directory/file or a
    fairseq checkpoint."""
    if not os.path.exists(path):
        raise UnitsError(f"HuBERT checkpoint not found: {path}")
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.isdir(path):
        for name in ("model.safetensors", "pytorch_model.bin"):
            if os.path.exists(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
        else:
            raise UnitsError(f"{folder} has no model.safetensors or pytorch_model.bin")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        try:  # a truncated download or another file under the name: SafetensorError, OSError
            sd = load_file(path)
        except Exception as exc:  # noqa: BLE001
            raise UnitsError(f"cannot read HuBERT checkpoint {path}: {describe(exc)}") from None
    else:
        try:
            sd = _torch_load(path, trusted=True)
        except Exception as exc:  # noqa: BLE001
            raise UnitsError(f"cannot read HuBERT checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(sd, dict) and "model" in sd and ("cfg" in sd or "args" in sd):  # fairseq
        cfg_obj = sd.get("cfg")
        model_cfg = cfg_obj["model"] if cfg_obj is not None else vars(sd["args"])
        model_cfg = dict(model_cfg) if not isinstance(model_cfg, dict) else model_cfg
        task_cfg = (cfg_obj.get("task") or {}) if cfg_obj is not None else vars(sd["args"])
        if model_cfg.get("activation_fn", "gelu") != "gelu":
            raise UnitsError(f"{path}: activation_fn={model_cfg['activation_fn']!r} is not supported (only 'gelu')")
        cfg = fairseq_config(model_cfg)
        mode = "layer_norm" if cfg.feat_extract_norm == "layer" else "default"
        return cfg, fairseq_to_hf(sd["model"], mode), 1e-5 if task_cfg.get("normalize", False) else None
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.exists(cfg_path):
        raise UnitsError(f"HF HuBERT checkpoint {path} needs a config.json beside it")
    hf_cfg = _read_json(cfg_path)
    if not isinstance(hf_cfg, dict):
        raise UnitsError(f"{cfg_path} is not a JSON object")
    if hf_cfg.get("conv_pos_batch_norm"):
        raise UnitsError(f"{cfg_path}: conv_pos_batch_norm models are not supported")
    for key in ("hidden_act", "feat_extract_activation"):  # the encoder computes exact GELU only
        if hf_cfg.get(key, "gelu") != "gelu":
            raise UnitsError(f"{cfg_path}: {key}={hf_cfg[key]!r} is not supported (only 'gelu')")
    cfg = HubertConfig.from_dict(hf_cfg)
    pre_path = os.path.join(folder, "preprocessor_config.json")
    if os.path.exists(pre_path):
        pre = _read_json(pre_path)
        normalize = bool(pre.get("do_normalize", False)) if isinstance(pre, dict) else False
    else:
        normalize = cfg.feat_extract_norm == "layer"
    return cfg, sd, 1e-7 if normalize else None


def _read_json(path: str):
    """A checkpoint's JSON file; a broken one is one UnitsError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise UnitsError(f"cannot read {path}: {describe(exc)}") from None


def set_params(model: HubertEncoder, params: dict) -> HubertEncoder:
    """Copy {dotted path: array} into ``model``, checking the names (every weight, no other) and every shape."""
    import jax.numpy as jnp
    from flax import nnx

    expected = {".".join(str(p) for p in path_) for path_, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    missing, unknown = sorted(expected - set(params)), sorted(set(params) - expected)
    if missing or unknown:
        raise UnitsError(f"HuBERT weights do not fit the config: {len(missing)} missing (first {missing[:1]}), "
                         f"{len(unknown)} unexpected (first {unknown[:1]})")
    for path, arr in params.items():
        obj = model
        *parents, leaf = path.split(".")
        for p in parents:
            obj = obj[int(p)] if p.isdigit() else getattr(obj, p)
        var = getattr(obj, leaf)
        if tuple(var.shape) != tuple(arr.shape):
            raise UnitsError(f"HuBERT weight {path}: checkpoint shape {arr.shape} != model shape {tuple(var.shape)}")
        var.value = jnp.asarray(arr, jnp.float32)
    return model


def import_hubert(path: str) -> tuple[HubertEncoder, float | None]:
    """A HubertEncoder with weights from ``path`` (HF or fairseq) and its wave normalisation eps (None: off)."""
    cfg, sd, norm_eps = read_checkpoint(path)
    return set_params(HubertEncoder(cfg), hf_to_params(sd, cfg)), norm_eps


def load_hubert(path: str) -> HubertEncoder:
    """The encoder alone (no wave normalisation: the raw model, as transformers' HubertModel)."""
    return import_hubert(path)[0]
