"""Our model against a public implementation: transformers' LlamaForCausalLM.

HF Llama rotates split halves (rotate_half); the paper rotates interleaved pairs. Permuting the
rows of wq and wk within each head (pair (2i, 2i+1) -> (i, i + head_dim/2)) maps one onto the other.
"""

import numpy as np
import pytest

from slmjax.model import ModelConfig, forward, import_state_dict
from test_model_reference import random_state_dict, rel_err

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.torch


def to_hf(sd, cfg):
    n, hd = cfg.n_heads, cfg.head_dim
    perm = np.concatenate([h * hd + np.r_[0:hd:2, 1:hd:2] for h in range(n)])
    out = {"model.embed_tokens.weight": sd["tok_embeddings.weight"],
           "model.norm.weight": sd["norm.weight"], "lm_head.weight": sd["tok_embeddings.weight"]}
    for i in range(cfg.n_layers):
        p, q = f"layers.{i}.", f"model.layers.{i}."
        out[q + "self_attn.q_proj.weight"] = sd[p + "attention.wq.weight"][perm]
        out[q + "self_attn.k_proj.weight"] = sd[p + "attention.wk.weight"][perm]
        out[q + "self_attn.v_proj.weight"] = sd[p + "attention.wv.weight"]
        out[q + "self_attn.o_proj.weight"] = sd[p + "attention.wo.weight"]
        out[q + "mlp.gate_proj.weight"] = sd[p + "feed_forward.w1.weight"]
        out[q + "mlp.up_proj.weight"] = sd[p + "feed_forward.w3.weight"]
        out[q + "mlp.down_proj.weight"] = sd[p + "feed_forward.w2.weight"]
        out[q + "input_layernorm.weight"] = sd[p + "attention_norm.weight"]
        out[q + "post_attention_layernorm.weight"] = sd[p + "ffn_norm.weight"]
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


def test_logits_match_transformers_llama():
    cfg = ModelConfig(vocab_size=61, dim=128, n_layers=2, n_heads=2, max_seq_len=64,
                      attention_block=16)
    sd = random_state_dict(cfg, seed=7)
    lc = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads, max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=True,
        attention_bias=False, mlp_bias=False, torch_dtype="float32")
    model = transformers.LlamaForCausalLM(lc).double().eval()
    missing, unexpected = model.load_state_dict({k: v.double() for k, v in to_hf(sd, cfg).items()},
                                                strict=False)
    assert not unexpected and all("rotary" in k for k in missing)
    tokens = np.random.default_rng(3).integers(0, cfg.vocab_size, (2, 45))
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(tokens)).logits.numpy()
    _, params = import_state_dict(sd, cfg)
    assert rel_err(forward(cfg, params, tokens), ref) < 1e-5


def test_rope_tables_are_the_release_float32_tables():
    """The release's precompute_freqs_cis, in float32 with torch: theta^(-2i/d), position x frequency
    rounded to float32, then polar. Ours equal it to one float32 ulp over the whole 2050 context;
    exact (float64) angles would be up to ~1e-4 off at the far end, a different model function."""
    import jax.numpy as jnp

    from slmjax.model.transformer import rope_tables

    t, hd = 2050, 64
    freqs = 1.0 / (10000.0 ** (torch.arange(0, hd, 2)[: hd // 2].float() / hd))
    cis = torch.polar(torch.ones(t, hd // 2), torch.outer(torch.arange(t), freqs).float())
    ref_cos = cis.real.numpy().repeat(2, axis=1)
    ref_sin = cis.imag.numpy().repeat(2, axis=1) * np.tile([-1.0, 1.0], hd // 2)  # signed as ours
    cos, sin = (np.asarray(x)[0, :, 0] for x in rope_tables(jnp.arange(t)[None], hd, 1e4, t))
    assert cos.dtype == sin.dtype == np.float32
    assert np.abs(cos - ref_cos).max() <= 6e-8 and np.abs(sin - ref_sin).max() <= 6e-8
    exact = np.arange(t)[:, None] * np.repeat(1e4 ** (-np.arange(0, hd, 2) / hd), 2)
    assert np.abs(np.cos(exact) - ref_cos).max() > 1e-5
