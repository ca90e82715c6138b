"""Our model against an independent float64 NumPy forward of the paper's PyTorch model."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slmjax.model import (CheckpointFormatError, ModelConfig, count_params, export_state_dict,
                          forward, import_state_dict, init_params, load_release_checkpoint,
                          save_release_checkpoint)

CFG = ModelConfig(vocab_size=61, dim=128, n_layers=2, n_heads=2, max_seq_len=64,
                  attention_block=8)


def random_state_dict(cfg, seed=0):
    """Random weights in the release's PyTorch naming and (out, in) layout."""
    rng = np.random.default_rng(seed)
    d, f, v = cfg.dim, cfg.ffn_dim, cfg.vocab_size
    sd = {"tok_embeddings.weight": rng.normal(0, 0.5, (v, d)),
          "norm.weight": rng.uniform(0.5, 1.5, d)}
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        for w in ("wq", "wk", "wv", "wo"):
            sd[p + f"attention.{w}.weight"] = rng.normal(0, d ** -0.5, (d, d))
        sd[p + "feed_forward.w1.weight"] = rng.normal(0, d ** -0.5, (f, d))
        sd[p + "feed_forward.w3.weight"] = rng.normal(0, d ** -0.5, (f, d))
        sd[p + "feed_forward.w2.weight"] = rng.normal(0, f ** -0.5, (d, f))
        sd[p + "attention_norm.weight"] = rng.uniform(0.5, 1.5, d)
        sd[p + "ffn_norm.weight"] = rng.uniform(0.5, 1.5, d)
    return {k: x.astype(np.float32) for k, x in sd.items()}


def reference_forward(sd, cfg, tokens, positions=None, segment_ids=None):
    """float64 NumPy forward written from the paper's description (Llama, interleaved RoPE)."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    b, t = tokens.shape
    nh, hd = cfg.n_heads, cfg.dim // cfg.n_heads
    pos = np.broadcast_to(np.arange(t), (b, t)) if positions is None else positions
    seg = np.zeros((b, t), int) if segment_ids is None else segment_ids

    def rms(x, w):
        return x / np.sqrt(np.mean(x ** 2, -1, keepdims=True) + cfg.norm_eps) * w

    def rotate(x):  # x [b, t, nh, hd]; complex pairs (x[2i] + i x[2i+1]) times e^{i pos theta_i}
        freqs = cfg.rope_theta ** (-np.arange(0, hd, 2) / hd)
        z = x[..., 0::2] + 1j * x[..., 1::2]
        z = z * np.exp(1j * pos[:, :, None, None] * freqs)
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = z.real, z.imag
        return out

    allowed = (seg[:, :, None] == seg[:, None, :]) & np.tril(np.ones((t, t), bool))
    h = sd["tok_embeddings.weight"][tokens]
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        x = rms(h, sd[p + "attention_norm.weight"])
        q = (x @ sd[p + "attention.wq.weight"].T).reshape(b, t, nh, hd)
        k = (x @ sd[p + "attention.wk.weight"].T).reshape(b, t, nh, hd)
        v = (x @ sd[p + "attention.wv.weight"].T).reshape(b, t, nh, hd)
        q, k = rotate(q), rotate(k)
        s = np.einsum("bqnh,bknh->bnqk", q, k) / np.sqrt(hd)
        s = np.where(allowed[:, None], s, -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = np.einsum("bnqk,bknh->bqnh", a, v).reshape(b, t, nh * hd)
        h = h + o @ sd[p + "attention.wo.weight"].T
        x = rms(h, sd[p + "ffn_norm.weight"])
        g = x @ sd[p + "feed_forward.w1.weight"].T
        u = x @ sd[p + "feed_forward.w3.weight"].T
        h = h + ((g / (1 + np.exp(-g))) * u) @ sd[p + "feed_forward.w2.weight"].T
    return rms(h, sd["norm.weight"]) @ sd["tok_embeddings.weight"].T


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def sd():
    return random_state_dict(CFG)


@pytest.mark.parametrize("attention", ["blockwise", "xla"])
def test_logits_match_numpy_reference(sd, attention):
    cfg = ModelConfig(**{**CFG.__dict__, "attention": attention})
    _, params = import_state_dict(sd, cfg)
    tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, (2, 37))
    ours = jax.jit(lambda p, x: forward(cfg, p, x))(params, tokens)
    assert ours.dtype == jnp.float32 and ours.shape == (2, 37, cfg.vocab_size)
    assert rel_err(ours, reference_forward(sd, cfg, tokens)) < 1e-5


@pytest.mark.parametrize("attention", ["blockwise", "xla"])
def test_segments_and_positions_match_reference(sd, attention):
    cfg = ModelConfig(**{**CFG.__dict__, "attention": attention})
    _, params = import_state_dict(sd, cfg)
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, cfg.vocab_size, (2, 30))
    segment_ids = np.repeat(np.array([[0, 1, 2], [5, 5, 7]]), [9, 14, 7], axis=1)
    positions = np.concatenate([np.arange(n) for n in (9, 14, 7)])[None].repeat(2, 0)
    ours = forward(cfg, params, tokens, positions=positions, segment_ids=segment_ids)
    ref = reference_forward(sd, cfg, tokens, positions, segment_ids)
    assert rel_err(ours, ref) < 1e-5


def test_inferred_config_and_export_round_trip(sd):
    cfg, params = import_state_dict(sd)  # shapes alone: head_dim 64 -> 2 heads
    assert (cfg.dim, cfg.n_heads, cfg.n_layers, cfg.vocab_size, cfg.ffn_dim) == (128, 2, 2, 61, 512)
    back = export_state_dict(cfg, params)
    assert set(back) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])
    assert sum(x.size for x in back.values()) == count_params(cfg)[0]


def test_release_directory_sharded_and_torch_file(sd, tmp_path):
    import torch
    from safetensors.numpy import save_file

    # Single-file directory written by our exporter.
    _, params = import_state_dict(sd, CFG)
    save_release_checkpoint(str(tmp_path / "single"), CFG, params)
    cfg1, p1 = load_release_checkpoint(str(tmp_path / "single"))
    assert cfg1.dim == CFG.dim and cfg1.n_heads == CFG.n_heads
    # Sharded directory as the release writes it.
    shard_dir = tmp_path / "sharded"
    shard_dir.mkdir()
    names = sorted(sd)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, part in enumerate(halves):
        fname = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: sd[k] for k in part}, str(shard_dir / fname))
        weight_map.update({k: fname for k in part})
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    meta = json.loads((tmp_path / "single" / "config.json").read_text())
    (shard_dir / "config.json").write_text(json.dumps(meta))
    _, p2 = load_release_checkpoint(str(shard_dir))
    # A torch state dict from a torch.compile'd module, with the tied output.weight present.
    tsd = {"_orig_mod." + k: torch.from_numpy(v) for k, v in sd.items()}
    tsd["_orig_mod.output.weight"] = tsd["_orig_mod.tok_embeddings.weight"]
    torch.save({"model": tsd}, str(tmp_path / "ckpt.pt"))
    _, p3 = load_release_checkpoint(str(tmp_path / "ckpt.pt"))
    for p in (p1, p2, p3):
        jax.tree.map(np.testing.assert_array_equal, p, params)


def test_bad_checkpoints_give_one_line_errors(sd, tmp_path):
    bad = dict(sd)
    bad["layers.1.feed_forward.w2.weight"] = bad["layers.1.feed_forward.w2.weight"][:, :10]
    with pytest.raises(CheckpointFormatError, match="layers.1.feed_forward.w2.weight.*shape"):
        import_state_dict(bad, CFG)
    missing = {k: v for k, v in sd.items() if k != "norm.weight"}
    with pytest.raises(CheckpointFormatError, match="lacks 'norm.weight'"):
        import_state_dict(missing, CFG)
    with pytest.raises(CheckpointFormatError, match="no such file"):
        load_release_checkpoint(str(tmp_path / "nope"))


def test_init_scheme():
    cfg = ModelConfig(vocab_size=502, dim=256, n_layers=8, n_heads=4)
    p = init_params(cfg, jax.random.key(0))
    std = lambda x: float(np.std(np.asarray(x)))  # noqa: E731
    assert abs(std(p["tok_embeddings"]) - 0.02) < 0.001
    layer = p["layers"]["3"]
    assert abs(std(layer["attention"]["wq"]) - 0.02) < 0.001
    assert abs(std(layer["feed_forward"]["w1"]) - 0.02) < 0.001
    assert abs(std(layer["feed_forward"]["w2"]) - 0.02) < 0.001
    small = 0.02 / np.sqrt(16)
    assert abs(std(layer["attention"]["wo"]) - small) < 0.0005
    assert abs(std(layer["feed_forward"]["w3"]) - small) < 0.0005
    np.testing.assert_array_equal(layer["ffn_norm"]["scale"], 1.0)


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_remat_gives_the_same_gradients(sd, remat):
    _, params = import_state_dict(sd, CFG)
    tokens = np.random.default_rng(4).integers(0, CFG.vocab_size, (2, 24))

    def grads(cfg):
        return jax.jit(jax.grad(lambda p: forward(cfg, p, tokens).mean()))(params)

    ref = grads(CFG)
    got = grads(ModelConfig(**{**CFG.__dict__, "remat": remat}))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got, ref)


def test_bfloat16_compute_stays_close(sd):
    cfg = ModelConfig(**{**CFG.__dict__, "dtype": "bfloat16"})
    _, params = import_state_dict(sd, cfg)
    tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, (2, 37))
    ours = forward(cfg, params, tokens)
    assert ours.dtype == jnp.float32 and params["tok_embeddings"].dtype == np.float32
    assert rel_err(ours, reference_forward(sd, cfg, tokens)) < 3e-2
