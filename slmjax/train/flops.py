"""FLOPs per token, accelerator peaks and MFU.

Conventions (per training token, forward + backward = 3x forward):
- "6n": 6 * N with N the parameters with the tied embedding counted once. That counts every
  matmul of the model exactly once, the output projection included (it is the tied embedding);
  the embedding lookup costs nothing.
- "6n_attn": PaLM's 6N + 12 * L * H * Q * T with causal attention counted once: only the
  unmasked half of the T x T score and value matmuls is work, so the attention term is
  6 * L * H * Q * T (L layers, H heads, Q head_dim, T sequence length).
- "6n_attn_full": 6N + 12 * L * H * Q * T (masked half counted too; what a plain masked
  attention kernel computes).
- "6n_nonemb": 6 * non-embedding parameters (Kaplan's C = 6ND convention).
"""

from __future__ import annotations

import functools
import time

from slmjax.model import ModelConfig, count_params

# Dense peak FLOP/s per chip/GPU: (bf16 tensor core/MXU, float32 as JAX runs f32 matmuls at its
# default precision: on TPU one bf16 pass of the MXU, so the bf16 peak; on A100/H100/H200 TF32).
PEAK_FLOPS = {
    "TPU v4": (275e12, 275e12),
    "TPU v4 lite": (138e12, 138e12),  # v4i (Jouppi et al., ISCA 2021); "TPU v4" alone would match it
    "TPU v5 lite": (197e12, 197e12),  # v5e
    "TPU v5p": (459e12, 459e12),
    "TPU v5": (459e12, 459e12),
    "TPU v6 lite": (918e12, 918e12),  # v6e (Trillium)
    "NVIDIA A100": (312e12, 156e12),  # f32 via TF32
    "NVIDIA H100": (989e12, 494.5e12),  # SXM; f32 via TF32
    "NVIDIA H100 PCIe": (756e12, 378e12),
    "NVIDIA H100 NVL": (835e12, 417.5e12),
    "NVIDIA H200": (989e12, 494.5e12),
    "NVIDIA H200 NVL": (835e12, 417.5e12),
}
_ALIASES = {"TPU v5e": "TPU v5 lite", "TPU v6e": "TPU v6 lite"}


def flops_per_token(cfg: ModelConfig, seq_len: int) -> dict[str, float]:
    """Training FLOPs per token in the conventions above."""
    total, nonemb = count_params(cfg)
    attn = 6 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len
    return {"6n": 6.0 * total, "6n_attn": 6.0 * total + attn,
            "6n_attn_full": 6.0 * total + 2 * attn, "6n_nonemb": 6.0 * nonemb}


def table_peak(device_kind: str, dtype: str = "bfloat16") -> float | None:
    """Peak FLOP/s of a device kind from the table (None when unknown)."""
    kind = _ALIASES.get(device_kind, device_kind)
    for name in sorted(PEAK_FLOPS, key=len, reverse=True):
        if kind.startswith(name):
            bf16, f32 = PEAK_FLOPS[name]
            return bf16 if dtype in ("bfloat16", "float16") else f32
    return None


@functools.lru_cache(maxsize=8)
def measured_matmul_peak(n: int = 2048, dtype: str = "float32", seconds: float = 2.0) -> float:
    """Measured FLOP/s of a jitted n x n matmul on the default device (the CPU 'peak')."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def peak_devices() -> int:
    """How many peaks the run's FLOP/s are measured against: every GPU/TPU device has its own; the
    CPU devices of a process share its host's cores, whose measured peak counts once."""
    import jax

    return jax.process_count() if jax.default_backend() == "cpu" else jax.device_count()


def peak_flops(device=None, dtype: str = "bfloat16") -> tuple[float, str]:
    """(peak FLOP/s of one device, where the figure comes from: 'table' or 'measured')."""
    import jax

    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return measured_matmul_peak(dtype=dtype), "measured"
    peak = table_peak(device.device_kind, dtype)
    if peak is None:
        return measured_matmul_peak(n=8192, dtype=dtype), "measured"
    return peak, "table"


def mfu(tokens_per_sec: float, flops_token: float, peak_per_device: float, n_devices: int = 1) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the peak of all devices."""
    return tokens_per_sec * flops_token / (peak_per_device * n_devices)
