"""A Flax NNX HuBERT encoder (HF ``HubertModel`` / fairseq HuBERT layout), float32, inference only.

Conv feature extractor ("group": GroupNorm on the first layer, base models; "layer": LayerNorm after
every conv, large models), feature projection, convolutional positional embedding with weight norm,
then post-norm (base) or pre-norm (``do_stable_layer_norm``, large) transformer layers. Conv kernels
and strides come from the config, so 50 Hz and 25 Hz (e.g. mHuBERT-25Hz) models both fit.

Inputs may be zero-padded to a bucket length (to reuse compiled code): ``n_valid`` samples are real,
and every statistic over time (first-layer GroupNorm, attention keys, positional conv input) is masked
so the valid frames equal an unpadded run. Every dot and convolution runs at full float32 precision
(accelerators otherwise use TF32 or bfloat16 passes), as transformers' float32 HubertModel.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class HubertConfig:
    """Architecture; field names follow transformers' HubertConfig."""

    conv_dim: tuple = (512,) * 7
    conv_kernel: tuple = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feat_extract_norm: str = "group"
    feat_proj_layer_norm: bool = True
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    layer_norm_eps: float = 1e-5

    @classmethod
    def from_dict(cls, d: dict) -> "HubertConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in fields}
        return cls(**kw)

    @property
    def hop(self) -> int:
        """Samples per output frame (320 at 50 Hz, 640 at 25 Hz)."""
        out = 1
        for s in self.conv_stride:
            out *= s
        return out

    @property
    def receptive_field(self) -> int:
        """Samples needed for one output frame (400 for the standard extractor)."""
        r = 1
        for k, s in zip(reversed(self.conv_kernel), reversed(self.conv_stride)):
            r = (r - 1) * s + k
        return r

    def n_frames(self, n_samples):
        for k, s in zip(self.conv_kernel, self.conv_stride):
            n_samples = (n_samples - k) // s + 1
        return n_samples


def _zeros(*shape):
    return nnx.Param(jnp.zeros(shape, jnp.float32))


def _ones(*shape):
    return nnx.Param(jnp.ones(shape, jnp.float32))


def _layer_norm(x, scale, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias


def _gelu(x):
    return jax.nn.gelu(x, approximate=False)


class LayerNorm(nnx.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        self.scale, self.bias, self.eps = _ones(dim), _zeros(dim), eps

    def __call__(self, x):
        return _layer_norm(x, self.scale[...], self.bias[...], self.eps)


class Dense(nnx.Module):
    def __init__(self, din: int, dout: int, bias: bool = True):
        self.kernel = _zeros(din, dout)
        self.bias = _zeros(dout) if bias else None

    def __call__(self, x):
        y = x @ self.kernel[...]
        return y if self.bias is None else y + self.bias[...]


class ConvLayer(nnx.Module):
    """Strided valid conv (kernel [k, c_in, c_out]), then norm and GELU.

    XLA's CPU convolution ran 3x faster here than im2col + matmul on the 2-core machine."""

    def __init__(self, cfg: HubertConfig, i: int):
        c_in = 1 if i == 0 else cfg.conv_dim[i - 1]
        self.k, self.s, c_out = cfg.conv_kernel[i], cfg.conv_stride[i], cfg.conv_dim[i]
        self.kernel = _zeros(self.k, c_in, c_out)
        self.bias = _zeros(c_out) if cfg.conv_bias else None
        self.norm = "layer" if cfg.feat_extract_norm == "layer" else ("group" if i == 0 else None)
        if self.norm:
            self.norm_scale, self.norm_bias = _ones(c_out), _zeros(c_out)

    def __call__(self, x, n_valid):
        y = jax.lax.conv_general_dilated(x, self.kernel[...], (self.s,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"))
        length = y.shape[1]
        if self.bias is not None:
            y = y + self.bias[...]
        n_valid = (n_valid - self.k) // self.s + 1
        if self.norm == "layer":
            y = _layer_norm(y, self.norm_scale[...], self.norm_bias[...], 1e-5)
        elif self.norm == "group":  # one group per channel: normalise each channel over valid time
            m = (jnp.arange(length)[None, :] < n_valid[:, None])[..., None].astype(y.dtype)
            cnt = n_valid[:, None, None].astype(y.dtype)
            mean = (y * m).sum(1, keepdims=True) / cnt
            var = (jnp.square(y - mean) * m).sum(1, keepdims=True) / cnt
            y = (y - mean) * jax.lax.rsqrt(var + 1e-5) * self.norm_scale[...] + self.norm_bias[...]
        return _gelu(y), n_valid


class PositionalConv(nnx.Module):
    """Grouped conv over time with weight norm (dim=2: one gain per kernel tap), 'same' length, GELU."""

    def __init__(self, cfg: HubertConfig):
        d, k, g = cfg.hidden_size, cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups
        self.k, self.groups = k, g
        self.weight_v = _zeros(d, d // g, k)  # torch layout [out, in/groups, k]
        self.weight_g = _ones(k)
        self.bias = _zeros(d)

    def __call__(self, x):
        v = self.weight_v[...]
        w = v * (self.weight_g[...] / jnp.sqrt(jnp.sum(v * v, axis=(0, 1))))[None, None, :]
        pad = (self.k // 2, self.k // 2 - (1 - self.k % 2))
        y = jax.lax.conv_general_dilated(x, jnp.transpose(w, (2, 1, 0)), (1,), [pad], dimension_numbers=("NWC", "WIO", "NWC"),
                                         feature_group_count=self.groups)
        return _gelu(y + self.bias[...])


class EncoderLayer(nnx.Module):
    def __init__(self, cfg: HubertConfig):
        d = cfg.hidden_size
        self.heads, self.pre_norm = cfg.num_attention_heads, cfg.do_stable_layer_norm
        self.q, self.k, self.v, self.o = Dense(d, d), Dense(d, d), Dense(d, d), Dense(d, d)
        self.attn_norm = LayerNorm(d, cfg.layer_norm_eps)
        self.ffn_in, self.ffn_out = Dense(d, cfg.intermediate_size), Dense(cfg.intermediate_size, d)
        self.ffn_norm = LayerNorm(d, cfg.layer_norm_eps)

    def attention(self, x, key_mask):
        b, t, d = x.shape
        h = self.heads
        q = self.q(x).reshape(b, t, h, d // h) * (d // h) ** -0.5
        k = self.k(x).reshape(b, t, h, d // h)
        v = self.v(x).reshape(b, t, h, d // h)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
        logits = jnp.where(key_mask[:, None, None, :], logits, -1e30)
        out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
        return self.o(out.reshape(b, t, d))

    def ffn(self, x):
        return self.ffn_out(_gelu(self.ffn_in(x)))

    def __call__(self, x, key_mask):
        if self.pre_norm:
            x = x + self.attention(self.attn_norm(x), key_mask)
            return x + self.ffn(self.ffn_norm(x))
        x = self.attn_norm(x + self.attention(x, key_mask))
        return self.ffn_norm(x + self.ffn(x))


class HubertEncoder(nnx.Module):
    """HuBERT; call with a padded wave batch [B, S] and ``n_valid`` [B] real samples per row."""

    def __init__(self, cfg: HubertConfig):
        self.cfg = cfg
        self.convs = nnx.List([ConvLayer(cfg, i) for i in range(len(cfg.conv_dim))])
        self.proj_norm = LayerNorm(cfg.conv_dim[-1], cfg.layer_norm_eps) if cfg.feat_proj_layer_norm else None
        self.proj = Dense(cfg.conv_dim[-1], cfg.hidden_size)
        self.pos_conv = PositionalConv(cfg)
        self.enc_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.layers = nnx.List([EncoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])

    def __call__(self, wave, n_valid, num_layers: int | None = None):
        """(hidden_states, last_hidden_state, n_frames): hidden_states[0] is the transformer input,
        hidden_states[i] layer i's output (HF's indexing); only ``num_layers`` layers run when given."""
        with jax.default_matmul_precision("highest"):
            return self._forward(wave, n_valid, num_layers)

    def _forward(self, wave, n_valid, num_layers):
        x = wave[..., None].astype(jnp.float32)
        n = n_valid.astype(jnp.int32)
        for conv in self.convs:
            x, n = conv(x, n)
        if self.proj_norm is not None:
            x = self.proj_norm(x)
        x = self.proj(x)
        valid = jnp.arange(x.shape[1])[None, :] < n[:, None]
        x = jnp.where(valid[..., None], x, 0.0)
        x = x + self.pos_conv(x)
        if not self.cfg.do_stable_layer_norm:
            x = self.enc_norm(x)
        hidden = [x]
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        for layer in layers:
            x = layer(x, valid)
            hidden.append(x)
        last = self.enc_norm(x) if self.cfg.do_stable_layer_norm else x
        return hidden, last, n
