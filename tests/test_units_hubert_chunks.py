"""HuBERT over long audio in chunks: the whole-file frame grid, and whole-file features where the model allows."""

import jax
import numpy as np
import pytest
from flax import nnx

from slmjax.units.hubert import HubertConfig, HubertEncoder
from slmjax.units.hubert_features import HubertFeatures

TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(8,) * 7,
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
HZ25 = dict(conv_dim=(8,) * 8, conv_kernel=(10, 3, 3, 3, 3, 2, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2, 2))


def _model(**kw):
    model = HubertEncoder(HubertConfig(**{**TINY, **kw}))
    rng = np.random.default_rng(0)
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda p: np.asarray(p) + rng.normal(0, 0.3, p.shape).astype(np.float32), params))
    return model


def _features(model, layer, chunk_seconds):
    return HubertFeatures(model, layer, chunk_seconds, bucket_seconds=2.5)  # one padded length: one compile


def _wave(seconds):
    return np.random.default_rng(1).standard_normal(int(16000 * seconds)).astype(np.float32)


@pytest.mark.parametrize("kw", [{}, pytest.param(HZ25, marks=pytest.mark.slow)], ids=["50hz", "25hz"])
def test_chunks_equal_the_whole_file_where_features_are_local(kw):
    """LayerNorm convs and the transformer input (layer 0) see only the positional conv's reach: chunks
    with that much context give the whole-file features exactly, frame for frame."""
    model = _model(feat_extract_norm="layer", **kw)
    wave = _wave(2.3)  # not a whole number of hops or chunks
    whole = _features(model, 0, 10.0)(wave)
    chunked = _features(model, 0, 0.8)(wave)
    assert whole.shape[0] == model.cfg.n_frames(wave.size)
    np.testing.assert_allclose(chunked, whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kw", [{}, HZ25], ids=["50hz", "25hz"])
@pytest.mark.parametrize("seconds", [29.9, 30.0, 60.0, 61.37, 95.0])
def test_chunk_plan_tiles_the_whole_file_frames(kw, seconds):
    feats = HubertFeatures(HubertEncoder(HubertConfig(**{**TINY, **kw})), layer=0, chunk_seconds=30.0)
    cfg, n = feats.cfg, int(16000 * seconds)
    runs = feats.chunks(n)
    kept = [frame for start, _, drop, keep in runs for frame in range(start // cfg.hop + drop, start // cfg.hop + drop + keep)]
    assert kept == list(range(cfg.n_frames(n)))  # every whole-file frame once, in order
    if n <= feats.chunk_samples:
        assert runs == [(0, n, 0, len(kept))]  # one pass
        return
    for start, size, drop, keep in runs:  # each on the grid, whole frames only, context unless at an end
        assert start % cfg.hop == 0 and (size - cfg.receptive_field) % cfg.hop == 0
        assert start + size <= n and size <= feats.chunk_samples
        assert drop >= feats.context_frames or start == 0
        assert cfg.n_frames(size) - drop - keep >= feats.context_frames or start + size + cfg.hop > n


@pytest.mark.slow
def test_chunks_keep_the_frame_grid_of_a_deep_base_model():
    """GroupNorm statistics and attention span one chunk, so features differ from one pass, but every
    frame is there once."""
    model = _model()
    wave = _wave(2.3)
    whole = _features(model, 2, 10.0)(wave)
    feats = _features(model, 2, 0.8)
    assert feats(wave).shape == whole.shape and len(feats.chunks(wave.size)) == 4
