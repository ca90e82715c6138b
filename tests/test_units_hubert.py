"""HuBERT parity: our NNX encoder, loaded through the importer, against transformers' HubertModel."""

import os

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402

from slmjax.units.hubert_import import fairseq_to_hf, hf_to_params, load_hubert, read_checkpoint  # noqa: E402

SMALL = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, conv_dim=(16,) * 7,
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
CONFIGS = {
    "base": dict(),  # post-norm, GroupNorm feature extractor (hubert-base layout)
    "large": dict(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True),  # pre-norm (hubert-large)
    "25hz": dict(conv_dim=(16,) * 8, conv_kernel=(10, 3, 3, 3, 3, 2, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2, 2)),
}

_FAIRSEQ_SMALL = {"conv_feature_layers": "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2", "encoder_embed_dim": 32,
                  "encoder_layers": 3, "encoder_attention_heads": 4, "encoder_ffn_embed_dim": 64, "conv_pos": 16,
                  "conv_pos_groups": 4, "layer_norm_first": False, "extractor_mode": "default", "conv_bias": False}  # SMALL, base


def _hf_model(kind, tmp_path, safe=True):
    torch.manual_seed(0)
    cfg = transformers.HubertConfig(**{**SMALL, **CONFIGS[kind]})
    model = transformers.HubertModel(cfg).eval()
    with torch.no_grad():  # randomise norms and biases too (their init is ones/zeros)
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias") or "original0" in name:
                p.add_(0.1 * torch.randn_like(p))
    if safe:
        model.save_pretrained(tmp_path)
    else:  # a torch-pickled state dict beside config.json
        os.makedirs(tmp_path, exist_ok=True)
        model.config.save_pretrained(tmp_path)
        torch.save(model.state_dict(), os.path.join(tmp_path, "pytorch_model.bin"))
    return model


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_every_hidden_state_matches_transformers(kind, tmp_path):
    model = _hf_model(kind, tmp_path)
    ours = load_hubert(str(tmp_path))
    rng = np.random.default_rng(0)
    n = 7000
    wave = rng.standard_normal(n).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(wave)[None], output_hidden_states=True)
    for pad in (0, 2600):  # exact length, and zero-padded to a bucket (masked)
        buf = np.concatenate([wave, np.zeros(pad, np.float32)])[None]
        hidden, last, frames = ours(jnp.asarray(buf), jnp.asarray([n]))
        t = int(frames[0])
        assert t == ref.last_hidden_state.shape[1]
        assert len(hidden) == len(ref.hidden_states) == SMALL["num_hidden_layers"] + 1
        for h, r in zip(hidden, ref.hidden_states):
            np.testing.assert_allclose(np.asarray(h)[0, :t], r[0].numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.asarray(last)[0, :t], ref.last_hidden_state[0].numpy(), atol=1e-4, rtol=0)


def test_torch_bin_and_fairseq_checkpoints(tmp_path):
    model = _hf_model("base", tmp_path / "hf", safe=False)
    assert os.path.exists(tmp_path / "hf" / "pytorch_model.bin")
    cfg, sd, _ = read_checkpoint(str(tmp_path / "hf"))
    fs = _fairseq_state_dict(model)  # a fairseq checkpoint with the same weights
    fs["label_embs_concat"] = torch.zeros(3, 4)
    torch.save({"model": fs, "cfg": {"model": _FAIRSEQ_SMALL}}, tmp_path / "hubert_fs.pt")
    fs_cfg, fs_sd, _ = read_checkpoint(str(tmp_path / "hubert_fs.pt"))
    assert fs_cfg == cfg
    a, b = hf_to_params(sd, cfg), hf_to_params(fs_sd, fs_cfg)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert fairseq_to_hf({"w2v_encoder.w2v_model.encoder.layers.0.fc1.weight": 1}, "default") == {
        "encoder.layers.0.feed_forward.intermediate_dense.weight": 1}


def test_features_chunked_and_saved_in_tokenizer(tmp_path):
    from slmjax.units.fit import fit_tokenizer
    from slmjax.units.hubert_features import HubertFeatures
    from slmjax.units.sources import Utterance
    from slmjax.units.tokenizer import load_tokenizer

    model = _hf_model("25hz", tmp_path / "hf")
    rng = np.random.default_rng(1)
    wave = rng.standard_normal(16000).astype(np.float32)
    feats = HubertFeatures.from_checkpoint(str(tmp_path / "hf"), layer=2, chunk_seconds=0.5, save_dir=str(tmp_path / "tok"))
    out = feats(wave)
    runs = feats.chunks(wave.size)
    assert len(runs) == 3 and all(size <= 8000 for _, size, _, _ in runs)
    with torch.no_grad():  # each run of at most 0.5 s alone, its context frames dropped, as the chunked encoder does
        ref = np.concatenate([model(torch.from_numpy(wave[start : start + size])[None], output_hidden_states=True)
                              .hidden_states[2][0, drop : drop + keep].numpy() for start, size, drop, keep in runs])
    assert feats.frame_rate == 25.0 and out.shape == ref.shape == (feats.cfg.n_frames(wave.size), 32)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    utts = [Utterance(f"u{i}", f"mem{i}", "train", load=lambda i=i: rng.standard_normal(8000 + 1000 * i).astype(np.float32))
            for i in range(4)]
    tok = fit_tokenizer(feats, utts, str(tmp_path / "tok"), k=4, progress=False)
    again = load_tokenizer(str(tmp_path / "tok"))  # no PyTorch needed: weights live in the tokenizer
    assert again.identity == tok.identity and again.identity["kind"] == "hubert" and again.frame_rate == 25.0
    assert np.array_equal(again.encode_wave(wave), tok.encode_wave(wave))


def _fairseq_state_dict(model):
    """``model``'s weights under fairseq HuBERT's names (the inverse of HF's converter)."""
    norm = "2.1." if model.config.feat_extract_norm == "layer" else "2."
    fs = {}
    for k, v in model.state_dict().items():
        if k == "masked_spec_embed":
            continue
        k2 = k.replace("feature_projection.projection.", "post_extract_proj.").replace("feature_projection.layer_norm.", "layer_norm.")
        k2 = k2.replace("encoder.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g")
        k2 = k2.replace("encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v")
        k2 = k2.replace("encoder.pos_conv_embed.conv.", "encoder.pos_conv.0.").replace(".attention.", ".self_attn.")
        k2 = k2.replace(".feed_forward.intermediate_dense.", ".fc1.").replace(".feed_forward.output_dense.", ".fc2.")
        if k2.startswith("encoder.layers.") and ".layer_norm." in k2:
            k2 = k2.replace(".layer_norm.", ".self_attn_layer_norm.")
        if k2.startswith("feature_extractor."):
            k2 = k2.replace("conv.", "0.").replace("layer_norm.", norm)
        fs[k2] = v
    return fs


def _fairseq_large(model, tmp_path, normalize):
    """``model`` (the "large" layout) saved as a fairseq checkpoint whose task normalises or not."""
    fs = _fairseq_state_dict(model)
    model_cfg = dict(_FAIRSEQ_SMALL, layer_norm_first=True, extractor_mode="layer_norm", conv_bias=True)
    path = tmp_path / f"large_norm{int(normalize)}.pt"
    torch.save({"model": fs, "cfg": {"model": model_cfg, "task": {"normalize": normalize}}}, path)
    return str(path)


def test_waveform_normalisation_as_the_checkpoint_says(tmp_path):
    """fairseq's HuBERT feature reader layer-norms the whole wave when the checkpoint's task has
    ``normalize`` (HuBERT large/xlarge); HF checkpoints say it in preprocessor_config.json."""
    from slmjax.units.hubert_features import HubertFeatures
    from slmjax.units.tokenizer import load_tokenizer
    from slmjax.units.fit import fit_tokenizer
    from slmjax.units.sources import Utterance

    model = _hf_model("large", tmp_path / "hf")
    wave = (0.05 * np.random.default_rng(2).standard_normal(12000) + 0.01).astype(np.float32)  # far from unit variance
    x = torch.from_numpy(wave)[None]
    with torch.no_grad():
        raw = model(x, output_hidden_states=True).hidden_states[2][0].numpy()
        normed = model(torch.nn.functional.layer_norm(x, x.shape), output_hidden_states=True).hidden_states[2][0].numpy()
    assert np.abs(raw - normed).max() > 0.1  # the test can tell them apart
    for normalize, ref in ((False, raw), (True, normed)):
        feats = HubertFeatures.from_checkpoint(_fairseq_large(model, tmp_path, normalize), layer=2)
        np.testing.assert_allclose(feats(wave), ref, atol=1e-4, rtol=0)
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    fe.save_pretrained(tmp_path / "hf")  # preprocessor_config.json beside the HF model
    hf_in = torch.from_numpy(fe(wave, sampling_rate=16000, return_tensors="np").input_values)
    with torch.no_grad():
        ref = model(hf_in, output_hidden_states=True).hidden_states[2][0].numpy()
    feats = HubertFeatures.from_checkpoint(str(tmp_path / "hf"), layer=2, save_dir=str(tmp_path / "tok"))
    np.testing.assert_allclose(feats(wave), ref, atol=1e-4, rtol=0)
    utts = [Utterance(f"u{i}", f"mem{i}", "train", load=lambda: wave) for i in range(3)]
    tok = fit_tokenizer(feats, utts, str(tmp_path / "tok"), k=3, progress=False)
    again = load_tokenizer(str(tmp_path / "tok"))  # the setting travels with the tokenizer
    np.testing.assert_allclose(again.features(wave), ref, atol=1e-4, rtol=0)
    assert again.identity == tok.identity


def test_failed_refit_leaves_the_existing_tokenizer(tmp_path):
    """A HuBERT fit into an existing tokenizer directory that fails (a wrong --audio, nothing usable)
    withdrew that tokenizer before reading any audio: datasets naming it could no longer load it."""
    import types

    import soundfile as sf

    from slmjax.units.errors import UnitsError
    from slmjax.units.fit import fit_from_flags
    from slmjax.units.tokenizer import load_tokenizer

    _hf_model("25hz", tmp_path / "hf")
    rng = np.random.default_rng(0)
    (tmp_path / "audio").mkdir()
    for i in range(3):
        sf.write(tmp_path / "audio" / f"a{i}.wav", 0.3 * rng.standard_normal(16000).astype(np.float32), 16000)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.wav").write_bytes(b"junk")
    flags = dict(features="hubert", hubert_checkpoint=str(tmp_path / "hf"), hubert_layer=2, chunk_seconds=30.0, k=4,
                 seed=0, kmeans_method="lloyd", kmeans_iters=5, kmeans_batch=100, max_frames=10_000, fit_hours=1.0,
                 kmeans_file=None, coarse="none", coarse_vocab=5000, data_dir=None, holdout=0.0, mfcc_norm=False,
                 out=str(tmp_path / "tok"), audio=str(tmp_path / "audio"))
    fit_from_flags(types.SimpleNamespace(**flags))
    before = load_tokenizer(str(tmp_path / "tok")).identity
    for audio, message in ((str(tmp_path / "missing"), "audio source not found"),
                           (str(tmp_path / "junk"), "nothing could be read")):
        with pytest.raises(UnitsError, match=message):
            fit_from_flags(types.SimpleNamespace(**dict(flags, audio=audio, k=3)))
        assert load_tokenizer(str(tmp_path / "tok")).identity == before


@pytest.mark.parametrize("edit", [{"num_hidden_layers": 2}, {"conv_bias": False}], ids=["fewer_layers", "no_conv_bias"])
def test_a_config_that_does_not_match_the_weights_is_refused(tmp_path, edit):
    """A config.json with fewer layers (or no conv biases) than the weights loaded a truncated model,
    the checkpoint's extra weights dropped without a word."""
    import json

    from slmjax.units.errors import UnitsError

    torch.manual_seed(0)
    transformers.HubertModel(transformers.HubertConfig(**SMALL, conv_bias=True)).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, **edit}))
    with pytest.raises(UnitsError, match="HuBERT config does not match the checkpoint"):
        load_hubert(str(tmp_path))


def test_tokenizer_weights_with_wrong_names_are_refused(tmp_path):
    """hubert.safetensors lacking a weight loaded with that weight left at its init (zeros); an extra or
    unreadable one gave a traceback blaming tokenizer.json. Each is now one line naming the file."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from slmjax.units.errors import UnitsError
    from slmjax.units.hubert_features import HubertFeatures, save_weights

    _hf_model("base", tmp_path / "hf")
    path = str(tmp_path / "hubert.safetensors")
    save_weights(load_hubert(str(tmp_path / "hf")), path)
    assert HubertFeatures.from_saved(path, layer=1).dim == SMALL["hidden_size"]
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
    good = load_file(path)
    for name, sd, md in [("missing", {k: v for k, v in good.items() if k != "layers.0.q.kernel"}, meta),
                         ("unexpected", {**good, "layers.9.q.kernel": good["layers.0.q.kernel"]}, meta),
                         ("no config", good, {"sha256": meta["sha256"]})]:
        save_file(sd, path, metadata=md)
        with pytest.raises(UnitsError, match=r"hubert\.safetensors: .*refit the tokenizer") as exc:
            HubertFeatures.from_saved(path, layer=1)
        assert "\n" not in str(exc.value), name


def test_an_activation_other_than_gelu_is_refused(tmp_path):
    """The encoder computes exact GELU; a config naming another activation loaded and gave other features."""
    from slmjax.units.errors import UnitsError

    torch.manual_seed(0)
    model = transformers.HubertModel(transformers.HubertConfig(**SMALL, hidden_act="relu")).eval()
    model.save_pretrained(tmp_path)
    with pytest.raises(UnitsError, match="hidden_act='relu' is not supported"):
        load_hubert(str(tmp_path))
