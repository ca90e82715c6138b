"""The five paper sizes: parameter counts exactly as PAPER.md's table."""

import numpy as np
import pytest

from slmjax.model import MODEL_SIZES, ModelConfig, abstract_params, count_params, ffn_hidden_dim

PAPER = {  # name: (layers, dim, heads, ffn hidden, total, non-embedding)
    "s20m": (6, 512, 8, 1536, 20_710_912, 20_453_888),
    "s85m": (12, 768, 12, 2048, 85_339_392, 84_953_856),
    "s155m": (12, 1024, 16, 2816, 154_680_320, 154_166_272),
    "s309m": (24, 1024, 16, 2816, 308_845_568, 308_331_520),
    "s823m": (16, 2048, 32, 5632, 823_179_264, 822_151_168),
}


@pytest.mark.parametrize("size", sorted(PAPER))
def test_paper_sizes(size):
    layers, dim, heads, hidden, total, nonemb = PAPER[size]
    cfg = ModelConfig.from_size(size)
    assert (cfg.n_layers, cfg.dim, cfg.n_heads, cfg.head_dim) == (layers, dim, heads, 64)
    assert ffn_hidden_dim(dim) == cfg.ffn_dim == hidden
    assert count_params(cfg) == (total, nonemb)
    # The actual parameter tree (shapes only, nothing allocated) has exactly that many entries.
    leaves = abstract_params(cfg)
    import jax

    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(leaves)) == total


def test_sizes_table_is_the_papers():
    assert set(MODEL_SIZES) == set(PAPER)
