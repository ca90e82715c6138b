"""Release checkpoint files: what the paper's PyTorch release reads and writes, and one clear
CheckpointFormatError for every kind of file that is not such a checkpoint."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from slmjax.model import (CheckpointFormatError, ModelConfig, export_state_dict, import_state_dict,
                          init_params, load_release_checkpoint, save_release_checkpoint)

CFG = ModelConfig(vocab_size=21, dim=128, n_layers=2, n_heads=2)

# The release's ModelArgs fields (github.com/tiagoCuervo/slm_scaling, src/slm/model.py). Its
# TransformerLM.from_pretrained raises "unknown model arguments" for any other key of model_args,
# and its RoPE base is fixed at 10000 (no field for it).
RELEASE_MODEL_ARGS = {"dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "prefix_vocab_size",
                      "hidden_dim", "multiple_of", "norm_eps", "block_size", "dropout", "prefix_pad"}


@pytest.fixture(scope="module")
def sd():
    return export_state_dict(CFG, jax.device_get(init_params(CFG, jax.random.key(0))))


@pytest.fixture()
def release_dir(sd, tmp_path):
    """A directory as the release's save_pretrained writes it (asdict(ModelArgs), tied list)."""
    from safetensors.numpy import save_file

    args = {"dim": 128, "n_layers": 2, "n_heads": 2, "n_kv_heads": None, "vocab_size": 21,
            "prefix_vocab_size": None, "hidden_dim": None, "multiple_of": 256, "norm_eps": 1e-5,
            "block_size": 2050, "dropout": 0.0, "prefix_pad": None}
    meta = {"format_version": 1, "model_type": "slm", "architectures": ["TransformerLM"],
            "model_args": args, "torch_dtype": "float32",
            "tied_weights": ["tok_embeddings.weight", "output.weight"]}
    (tmp_path / "config.json").write_text(json.dumps(meta))
    save_file(sd, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    return tmp_path


def test_export_writes_only_model_args_the_release_accepts(sd, tmp_path):
    _, params = import_state_dict(sd, CFG)
    save_release_checkpoint(str(tmp_path), CFG, params)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["format_version"] == 1
    assert set(meta["model_args"]) <= RELEASE_MODEL_ARGS
    cfg, back = load_release_checkpoint(str(tmp_path))
    assert cfg == CFG
    jax.tree.map(np.testing.assert_array_equal, back, params)
    # Another RoPE base is kept (the release, whose base is fixed, then refuses the file).
    other = dataclasses.replace(CFG, rope_theta=5e5)
    save_release_checkpoint(str(tmp_path / "theta"), other, params)
    assert load_release_checkpoint(str(tmp_path / "theta"))[0] == other


def test_a_release_written_directory_loads(sd, release_dir):
    cfg, params = load_release_checkpoint(str(release_dir))
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.vocab_size, cfg.ffn_dim) == (128, 2, 2, 21, 512)
    np.testing.assert_array_equal(params["layers"]["1"]["feed_forward"]["w2"],
                                  sd["layers.1.feed_forward.w2.weight"].T)


def test_config_json_problems_are_one_line(release_dir):
    config = release_dir / "config.json"
    meta = json.loads(config.read_text())
    args = meta["model_args"]
    no_vocab = {k: v for k, v in args.items() if k != "vocab_size"}
    cases = [
        ("{not json", "config.json: not readable JSON"),
        ({**meta, "format_version": 2}, "format_version 2"),
        ({**meta, "model_args": [1, 2]}, "'model_args' is not an object"),
        ({**meta, "model_args": no_vocab}, "model_args lacks 'vocab_size'"),
        ({**meta, "model_args": {**args, "n_heads": 3}}, "model.n_heads=3 does not divide model.dim=128"),
        ({**meta, "model_args": {**args, "prefix_vocab_size": 50}}, "prefix_vocab_size=50"),
    ]
    for content, message in cases:
        config.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(CheckpointFormatError, match=message):
            load_release_checkpoint(str(release_dir))


def test_unreadable_or_missing_tensor_files_are_one_line(release_dir, tmp_path_factory):
    junk = tmp_path_factory.mktemp("junk")
    (junk / "a.safetensors").write_bytes(b"garbage")
    (junk / "a.pt").write_bytes(b"garbage")
    for path in (junk / "a.safetensors", junk / "a.pt"):
        with pytest.raises(CheckpointFormatError, match="not a release checkpoint"):
            load_release_checkpoint(str(path))
    index = {"weight_map": {"norm.weight": "model-00002-of-00002.safetensors"}}
    (release_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    # Single-file and sharded weights side by side: the release's loader refuses to choose.
    with pytest.raises(CheckpointFormatError, match="ambiguous"):
        load_release_checkpoint(str(release_dir))
    (release_dir / "model.safetensors").rename(release_dir / "model-00001-of-00002.safetensors")
    with pytest.raises(CheckpointFormatError, match="model-00002-of-00002.safetensors"):
        load_release_checkpoint(str(release_dir))


def test_tensor_problems_are_one_line(sd):
    no_first_w1 = {k: v for k, v in sd.items() if k != "layers.0.feed_forward.w1.weight"}
    with pytest.raises(CheckpointFormatError, match="lacks 'layers.0.feed_forward.w1.weight'"):
        import_state_dict(no_first_w1)  # the config inferred from the shapes
    ints = {**sd, "norm.weight": sd["norm.weight"].astype(np.int64)}
    with pytest.raises(CheckpointFormatError, match="'norm.weight' has dtype int64"):
        import_state_dict(ints, CFG)
    # dim 96 is no multiple of the paper's head_dim 64: the head count cannot be read off shapes
    cfg96 = ModelConfig(vocab_size=21, dim=96, n_layers=1, n_heads=3)
    sd96 = export_state_dict(cfg96, jax.device_get(init_params(cfg96, jax.random.key(0))))
    with pytest.raises(CheckpointFormatError, match="n_heads"):
        import_state_dict(sd96)
    assert import_state_dict(sd96, cfg96)[0] == cfg96


def _training_checkpoint(path, sd, legacy=False, **model_args):
    """A checkpoint-*.pt laid out as the release's trainer saves it: the state dict beside the
    optimizer state, asdict(ModelArgs), and the RNG states of python, numpy and torch."""
    import random

    import torch

    model = {k: torch.from_numpy(v.copy()) for k, v in sd.items()}
    model["output.weight"] = model["tok_embeddings.weight"]
    args = {"dim": 128, "n_layers": 2, "n_heads": 2, "n_kv_heads": None, "vocab_size": 21,
            "prefix_vocab_size": None, "hidden_dim": None, "multiple_of": 256, "norm_eps": 1e-5,
            "block_size": 2050, "dropout": 0.0, "prefix_pad": None, **model_args}
    rng = np.random.default_rng(0)
    payload = {"format_version": 1, "model": model, "optimizer": {"state": {}, "param_groups": []},
               "scaler": {}, "step": 1000, "model_args": args, "train_config": {"seed": 1337},
               "world_size": 1,
               "rng_by_rank": [{"global": {"python": random.getstate(),
                                           "numpy": np.random.get_state(),
                                           "torch": torch.get_rng_state()},
                                "train": rng.bit_generator.state}]}
    torch.save(payload, str(path), _use_new_zipfile_serialization=not legacy)


def test_a_release_training_checkpoint_loads(sd, tmp_path):
    """Its numpy RNG state (a uint32 array) failed torch.load's weights-only unpickler
    ('Unsupported global: numpy._core.multiarray._reconstruct')."""
    _training_checkpoint(tmp_path / "checkpoint-00001000.pt", sd)
    # The same as numpy 1 (the release's time) names its array constructor; the legacy format
    # keeps the pickle uncompressed, so the name can be rewritten in place.
    _training_checkpoint(tmp_path / "legacy.pt", sd, legacy=True)
    raw = (tmp_path / "legacy.pt").read_bytes()
    assert b"numpy._core.multiarray" in raw
    (tmp_path / "numpy1.pt").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    for name in ("checkpoint-00001000.pt", "numpy1.pt"):
        cfg, params = load_release_checkpoint(str(tmp_path / name))
        assert cfg == CFG
        np.testing.assert_array_equal(params["norm"]["scale"], sd["norm.weight"])
        np.testing.assert_array_equal(params["layers"]["1"]["attention"]["wo"],
                                      sd["layers.1.attention.wo.weight"].T.reshape(2, 64, 128))


def test_a_training_checkpoint_is_read_with_its_model_args(sd, tmp_path):
    # Four heads of 32: the shapes are those of two heads of 64, which is what they were read as.
    # Older checkpoints name the context max_block_size (the release's loader renames it).
    _training_checkpoint(tmp_path / "checkpoint-00000010.pt", sd, n_heads=4, norm_eps=1e-6,
                         block_size=None, max_block_size=1024)
    cfg, params = load_release_checkpoint(str(tmp_path / "checkpoint-00000010.pt"))
    assert (cfg.n_heads, cfg.head_dim, cfg.norm_eps, cfg.max_seq_len) == (4, 32, 1e-6, 1024)
    assert params["layers"]["0"]["attention"]["wq"].shape == (128, 4, 32)


def test_wrapper_prefixes_in_any_order(sd):
    # DistributedDataParallel around a torch.compile'd module saves 'module._orig_mod.<name>'.
    wrapped = {"module._orig_mod." + k: v for k, v in sd.items()}
    cfg, params = import_state_dict(wrapped, CFG)
    np.testing.assert_array_equal(params["tok_embeddings"], sd["tok_embeddings.weight"])


def test_names_that_are_one_parameter_once_unwrapped_are_refused(sd):
    # 'model.norm.weight' beside 'norm.weight' (two models saved into one file): one of the two
    # was dropped without a word, whichever came last in the file.
    both = dict(sd, **{"model.norm.weight": sd["norm.weight"] * 2})
    for load in (lambda: import_state_dict(both, CFG), lambda: import_state_dict(both)):
        with pytest.raises(CheckpointFormatError) as e:
            load()
        assert str(e.value) == ("checkpoint names 'norm.weight' and 'model.norm.weight' are one "
                                "parameter once wrapper prefixes are removed: which to load is unclear")


def test_a_tied_model_saved_with_safetensors_save_model_loads(sd, tmp_path):
    """safetensors.torch.save_model (save_file refuses tied tensors) keeps one name of the tied
    embedding, the alphabetically first: 'output.weight'. Such a file was refused as 'not the
    paper's format'; its 'output.weight' is the embedding."""
    import torch
    from safetensors.torch import save_model

    module = torch.nn.Module()
    for name, value in sd.items():  # the release's module tree, output tied as in TransformerLM
        *path, leaf = name.split(".")
        node = module
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, torch.nn.Module())
            node = getattr(node, part)
        node.register_parameter(leaf, torch.nn.Parameter(torch.from_numpy(value.copy())))
    module.add_module("output", torch.nn.Module())
    module.output.weight = module.tok_embeddings.weight
    path = tmp_path / "model.safetensors"
    save_model(module, str(path))
    from safetensors.numpy import load_file
    assert "tok_embeddings.weight" not in load_file(str(path)) and "output.weight" in load_file(str(path))
    for overrides in ({}, {"n_heads": 4}):
        cfg, params = load_release_checkpoint(str(path), **overrides)
        assert (cfg.dim, cfg.n_layers, cfg.vocab_size) == (128, 2, 21)
        np.testing.assert_array_equal(params["tok_embeddings"], sd["tok_embeddings.weight"])
        np.testing.assert_array_equal(params["norm"]["scale"], sd["norm.weight"])


def test_export_into_a_sharded_directory_is_refused(sd, release_dir):
    """Export wrote model.safetensors beside the shards and index of a sharded release directory:
    the export 'succeeded' and the directory then loaded nowhere ('ambiguous', as the release's
    own loader also says). It is refused, and the shards stay as they were."""
    (release_dir / "model.safetensors").rename(release_dir / "model-00001-of-00001.safetensors")
    index = {"weight_map": {k: "model-00001-of-00001.safetensors" for k in sd}}
    (release_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    _, params = import_state_dict(sd, CFG)
    other = jax.tree.map(lambda x: x + 1, params)
    with pytest.raises(CheckpointFormatError, match="already holds sharded weights"):
        save_release_checkpoint(str(release_dir), CFG, other)
    assert not (release_dir / "model.safetensors").exists()
    _, back = load_release_checkpoint(str(release_dir))
    np.testing.assert_array_equal(back["tok_embeddings"], sd["tok_embeddings.weight"])


def test_export_of_hidden_dim_zero_writes_the_rule(tmp_path):
    """ModelConfig's hidden_dim=0 means the paper's rule, but it was written as model_args
    hidden_dim 0, which the release's FeedForward (rule only when hidden_dim is None) builds as a
    zero-width layer that cannot take the 512-wide weights."""
    cfg = dataclasses.replace(CFG, hidden_dim=0)
    save_release_checkpoint(str(tmp_path), cfg, jax.device_get(init_params(cfg, jax.random.key(0))))
    hidden = json.loads((tmp_path / "config.json").read_text())["model_args"]["hidden_dim"]
    # The release's FeedForward: 256 * ceil(int(2 * 4 * 128 / 3) / 256) = 256 * ceil(341 / 256) = 512
    assert (512 if hidden is None else hidden) == 512
    assert load_release_checkpoint(str(tmp_path))[0].ffn_dim == 512


def test_norm_eps_zero_survives_export_and_import(tmp_path):
    """model_args norm_eps 0.0 (which the release uses as given) was read back as 1e-5."""
    cfg = dataclasses.replace(CFG, norm_eps=0.0)
    save_release_checkpoint(str(tmp_path), cfg, jax.device_get(init_params(cfg, jax.random.key(0))))
    assert json.loads((tmp_path / "config.json").read_text())["model_args"]["norm_eps"] == 0.0
    assert load_release_checkpoint(str(tmp_path))[0].norm_eps == 0.0


def test_a_diverged_training_checkpoint_is_not_called_untied(sd, tmp_path):
    """A training checkpoint stores the tied embedding under both names (one tensor). With a NaN
    in it (a diverged run, the one a researcher inspects) the two compared unequal, NaN != NaN,
    and the file was refused as 'output.weight differs from tok_embeddings.weight: not tied'."""
    emb = sd["tok_embeddings.weight"].copy()
    emb[3, 5] = np.nan
    _training_checkpoint(tmp_path / "checkpoint-00000100.pt", {**sd, "tok_embeddings.weight": emb})
    _, params = load_release_checkpoint(str(tmp_path / "checkpoint-00000100.pt"))
    assert np.isnan(params["tok_embeddings"][3, 5]) and np.isnan(params["tok_embeddings"]).sum() == 1
    np.testing.assert_array_equal(params["tok_embeddings"], emb)


def test_a_state_dict_of_torch_tensors_imports(sd):
    """import_state_dict takes a live model's state_dict(): tensors that require grad and
    bfloat16 tensors (numpy() refuses both) give the same weights as numpy arrays, bfloat16
    rounded as torch rounds them."""
    import torch
    live = {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in sd.items()}
    _, got = import_state_dict(live, CFG)
    _, want = import_state_dict(sd, CFG)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
    half = {k: torch.from_numpy(v.copy()).to(torch.bfloat16) for k, v in sd.items()}
    _, got = import_state_dict(half, CFG)
    np.testing.assert_array_equal(got["norm"]["scale"],
                                  half["norm.weight"].float().numpy())
    np.testing.assert_array_equal(got["tok_embeddings"],
                                  half["tok_embeddings.weight"].float().numpy())


def test_a_head_count_that_does_not_divide_the_width_is_one_line(sd):
    """n_heads given to infer_config is checked against the checkpoint's width (3 does not
    divide 128: it ended in a reshape error, or an odd head size reached the model)."""
    from slmjax.model.convert import infer_config
    with pytest.raises(CheckpointFormatError, match="n_heads=3 does not divide model.dim=128"):
        infer_config(sd, n_heads=3)
    assert infer_config(sd, n_heads=4).n_heads == 4
