"""Model configuration: the paper's Llama-style speech LM and its five sizes."""

from __future__ import annotations

import dataclasses
import math

# The paper's five sizes (PAPER.md). head_dim = dim / n_heads = 64 for all of them.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "s20m": dict(n_layers=6, dim=512, n_heads=8),
    "s85m": dict(n_layers=12, dim=768, n_heads=12),
    "s155m": dict(n_layers=12, dim=1024, n_heads=16),
    "s309m": dict(n_layers=24, dim=1024, n_heads=16),
    "s823m": dict(n_layers=16, dim=2048, n_heads=32),
}

DTYPES = ("float32", "bfloat16", "float16", "auto")
ATTENTION_IMPLS = ("auto", "xla", "cudnn", "blockwise", "splash")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")


def ffn_hidden_dim(dim: int, multiple_of: int = 256) -> int:
    """SwiGLU hidden size of the paper: multiple_of * ceil(int(2 * 4 * dim / 3) / multiple_of)."""
    hidden = int(2 * (4 * dim) / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the transformer. Hashable: used as a static jit argument."""

    vocab_size: int = 502  # units 0..499, EOS 500, PAD 501 (the paper)
    dim: int = 512  # model width
    n_layers: int = 6
    n_heads: int = 8  # head_dim = dim // n_heads (64 in every paper size)
    hidden_dim: int | None = None  # SwiGLU hidden; None = the paper's rule (ffn_hidden_dim)
    multiple_of: int = 256  # rounding of the SwiGLU hidden size
    norm_eps: float = 1e-5  # RMSNorm epsilon (computed in float32)
    rope_theta: float = 10000.0  # RoPE base (interleaved-pair convention, float32)
    max_seq_len: int = 2050  # context length (the paper: 2050)
    init_std: float = 0.02  # N(0, std) for every Linear/Embedding; w3 and wo use std/sqrt(2L)
    param_dtype: str = "float32"  # storage dtype of the parameters
    dtype: str = "float32"  # compute dtype of matmuls; "auto" = float32 on CPU, bfloat16 elsewhere
    attention: str = "auto"  # auto: cuDNN (bf16) or XLA on GPU, splash on TPU, blockwise on CPU
    attention_block: int = 512  # query block of the blockwise (CPU) and splash (TPU) attention
    remat: str = "none"  # rematerialisation of each block: none | full | dots | dots_no_batch

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def ffn_dim(self) -> int:
        return self.hidden_dim if self.hidden_dim else ffn_hidden_dim(self.dim, self.multiple_of)

    @classmethod
    def from_size(cls, size: str, **overrides) -> "ModelConfig":
        if size not in MODEL_SIZES:
            raise KeyError(f"unknown model size {size!r}; known: {', '.join(MODEL_SIZES)}")
        return cls(**{**MODEL_SIZES[size], **overrides})

    def problems(self) -> list[str]:
        """One line per invalid field (empty when the config is valid)."""
        out = []
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "max_seq_len", "attention_block",
                     "multiple_of"):
            if getattr(self, name) <= 0:
                out.append(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.hidden_dim is not None and self.hidden_dim < 0:
            out.append(f"model.hidden_dim={self.hidden_dim} must be >= 0 (0 = the paper's rule)")
        # Written `not ok` so that NaN fails each check.
        for name in ("norm_eps", "init_std"):
            if not 0 <= getattr(self, name) < math.inf:
                out.append(f"model.{name}={getattr(self, name)} must be a number >= 0")
        if not 0 < self.rope_theta < math.inf:
            out.append(f"model.rope_theta={self.rope_theta} must be a positive number")
        if self.n_heads > 0 and self.dim % self.n_heads:
            out.append(f"model.n_heads={self.n_heads} does not divide model.dim={self.dim}")
        elif self.n_heads > 0 and self.head_dim % 2:
            out.append(f"model head_dim={self.head_dim} must be even for RoPE")
        for name, allowed in (("param_dtype", DTYPES[:3]), ("dtype", DTYPES),
                              ("attention", ATTENTION_IMPLS), ("remat", REMAT_POLICIES)):
            if getattr(self, name) not in allowed:
                out.append(f"model.{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        return out


def count_params(cfg: ModelConfig) -> tuple[int, int]:
    """(total parameters with the tied embedding counted once, non-embedding parameters)."""
    d, f = cfg.dim, cfg.ffn_dim
    per_layer = 4 * d * d + 3 * d * f + 2 * d
    nonemb = cfg.n_layers * per_layer + d  # + final norm
    return nonemb + cfg.vocab_size * d, nonemb


def resolve_dtype(name: str):
    """jnp dtype of a config dtype string ("auto": float32 on CPU, bfloat16 on accelerators)."""
    import jax.numpy as jnp

    from slmjax.model import platform

    if name == "auto":
        name = "float32" if platform.backend() == "cpu" else "bfloat16"
    return jnp.dtype(name)
