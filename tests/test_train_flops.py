"""FLOPs per token and accelerator peaks against hand-computed figures and vendors' datasheets."""

import pytest

from slmjax.model import ModelConfig
from slmjax.train.flops import flops_per_token, table_peak


@pytest.mark.parametrize("kind,bf16,f32", [
    # NVIDIA datasheets, dense (half the "with sparsity" figures, to the TFLOP/s); f32 as TF32.
    ("NVIDIA A100-SXM4-80GB", 312e12, 156e12),
    ("NVIDIA H100 80GB HBM3", 989e12, 494.5e12),   # SXM
    ("NVIDIA H100 PCIe", 756e12, 378e12),          # was read as the SXM part (31% higher)
    ("NVIDIA H100 NVL", 835e12, 417.5e12),
    ("NVIDIA H200", 989e12, 494.5e12),
    ("NVIDIA H200 NVL", 835e12, 417.5e12),
    # Google's TPU pages (bf16). JAX runs a float32 dot on TPU as one bf16 MXU pass at its default
    # precision: the table held a quarter of the bf16 peak, 4x the MFU of a float32 run.
    ("TPU v4", 275e12, 275e12),
    ("TPU v4 lite", 138e12, 138e12),  # v4i: was read as a v4 (2x its peak)
    ("TPU v5 lite", 197e12, 197e12),  # v5e
    ("TPU v5", 459e12, 459e12),  # v5p as jax names it
    ("TPU v5p", 459e12, 459e12),
    ("TPU v6 lite", 918e12, 918e12),  # v6e
])
def test_table_peaks(kind, bf16, f32):
    assert table_peak(kind, "bfloat16") == bf16
    assert table_peak(kind, "float32") == f32


def test_flops_per_token_conventions_by_hand():
    # s20m at T = 2050: N = 20,710,912 (PAPER.md), L*H*Q = 6 * 8 * 64 = 3072.
    f = flops_per_token(ModelConfig.from_size("s20m"), 2050)
    assert f["6n"] == 124_265_472
    assert f["6n_attn"] == 124_265_472 + 6 * 3072 * 2050        # causal: half of 12LHQT
    assert f["6n_attn_full"] == 124_265_472 + 12 * 3072 * 2050  # the release's MFU convention
    assert f["6n_nonemb"] == 6 * 20_453_888
