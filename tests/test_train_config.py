"""Dry run (the paper's five parameter counts), config validation messages, warm-up/cosine schedule."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from slmjax.train.optim import lr_at, make_optimizer, schedule, warmup_steps
from slmjax.train.validate import ConfigError, validate
from test_train_step_sharded import ROOT, load_config

PAPER = {"s20m": (20_710_912, 20_453_888, 64), "s85m": (85_339_392, 84_953_856, 128),
         "s155m": (154_680_320, 154_166_272, 256), "s309m": (308_845_568, 308_331_520, 252),
         "s823m": (823_179_264, 822_151_168, 456)}


def _cli(*args, devices=8):
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.Popen([sys.executable, "-m", "slmjax.train.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_dry_run_param_counts_of_the_paper():
    procs = {s: _cli(f"--config=configs/train.py:{s}", "--dry_run", devices=4) for s in PAPER}
    for size, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        plan = json.loads(out.strip().splitlines()[-1])
        total, nonemb, batch = PAPER[size]
        assert (plan["n_params"], plan["n_params_nonemb"]) == (total, nonemb)
        assert plan["batch_tokens"] == batch * 2050
        assert plan["tokens"] == plan["steps"] * plan["batch_tokens"]
        assert plan["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
        # 6N + 12 L H Q T with causal attention halved (L H Q = n_layers * dim).
        cfgs = {"s20m": (6, 512), "s85m": (12, 768), "s155m": (12, 1024), "s309m": (24, 1024),
                "s823m": (16, 2048)}
        layers, dim = cfgs[size]
        assert plan["flops_per_token"]["6n"] == 6 * total
        assert plan["flops_per_token"]["6n_attn"] == 6 * total + 6 * layers * dim * 2050
        assert plan["flops_per_token"]["6n_nonemb"] == 6 * nonemb


BAD = [
    (["--config=configs/train.py:s20m", "--config.model.n_heads=7"],
     "model.n_heads=7 does not divide model.dim=512"),
    (["--config=configs/train.py:s20m", "--config.mesh.fsdp=3"],
     "does not match the 8 available devices"),
    (["--config=configs/train.py:s309m", "--config.mesh.data=2", "--config.mesh.fsdp=4"],
     "train.batch_size=252 / train.micro_batches=1 is not divisible by the 8 batch shards"),
    (["--config=configs/train.py:s20m", "--config.train.micro_batches=3"],
     "train.batch_size=64 is not divisible by train.micro_batches=3"),
    (["--config=configs/train.py:s999m"], "unknown model size 's999m'"),
    (["--config=configs/train.py:s20m", "--config.train.stpes=3"], "unknown config field "
     "config.train.stpes (no field 'stpes'; Did you mean \"steps\" instead of \"stpes\"?)"),
    (["--config=configs/train.py:tiny", "--config.data.kind=units", "--config.data.path=gs://b/u"],
     "data.path=gs://b/u is a URL, not a path"),
    # s20m sets train.tokens, which used to hide a negative train.steps (3,158 steps planned).
    (["--config=configs/train.py:s20m", "--config.train.steps=-5"],
     "train.steps=-5 must be a number >= 0"),
    (["--config=configs/train.py:s20m", "--config.data.seq_len=0"],
     "data.seq_len=0 must be in 1..model.max_seq_len=2050"),
    (["--config=/nonexistent/train.py:tiny"],
     "cannot load the --config file: [Errno 2] No such file or directory: '/nonexistent/train.py'"),
]


def _assert_one_line(proc, message):
    out, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.startswith("slmjax-train:")]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err and out == ""
    return lines[0]


def test_cli_rejects_bad_configs_in_one_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(arg:\n")
    bad = BAD + [([f"--config={broken}:tiny"],
                  f"cannot load the --config file: SyntaxError: '(' was never closed ({broken}, line 1)")]
    procs = [(_cli(*args, "--dry_run"), message) for args, message in bad]  # in parallel
    for proc, message in procs:
        _assert_one_line(proc, message)


def test_a_bucket_url_workdir_is_refused_before_training():
    proc = _cli("--config=configs/train.py:tiny", "--workdir=gs://b/run")
    assert "/mnt/gcs" in _assert_one_line(proc, "--workdir=gs://b/run is a URL, not a path")


def test_validation_lists_every_problem_one_line_each():
    c = load_config("s20m")
    c.model.n_heads = 7
    c.mesh.update(data=1, fsdp=1, tensor=2)
    c.data.seq_len = 4096
    with pytest.raises(ConfigError) as e:
        validate(c, n_devices=2)
    lines = str(e.value).splitlines()
    assert any("n_heads=7 does not divide model.dim=512" in ln for ln in lines)
    assert any("data.seq_len=4096" in ln for ln in lines)
    assert any("mesh.tensor=2 does not divide model.n_heads=7" in ln for ln in lines)
    validate(load_config("s20m"), n_devices=8)  # the defaults are valid
    validate(load_config("tiny"), n_devices=1)


@pytest.mark.parametrize("field,value,message", [
    ("steps", -5, "train.steps=-5 must be a number >= 0 (0 = derived from train.tokens)"),
    ("tokens", -1, "train.tokens=-1 must be a number >= 0 (0 = train.steps)"),
    ("warmup_min", -1, "train.warmup_min=-1 must be a number >= 0"),
    ("warmup_max", -1, "train.warmup_max=-1 must be a number >= 0"),
    ("warmup_frac", -0.1, "train.warmup_frac=-0.1 must be in [0, 1]"),
    ("warmup_frac", 1.5, "train.warmup_frac=1.5 must be in [0, 1]"),
    ("lr", -1e-3, "train.lr=-0.001 must be a positive number"),
    ("lr", 0.0, "train.lr=0.0 must be a positive number"),
    ("min_lr", 1e-3, "train.min_lr=0.001 must be in 0..train.lr=0.0005"),
    ("eps", float("nan"), "train.eps=nan must be a positive number"),
    ("clip_norm", 0.0, "train.clip_norm=0.0 must be a positive number"),
    ("weight_decay", float("inf"), "train.weight_decay=inf must be a number >= 0"),
    ("eval_every", -1, "train.eval_every=-1 must be a positive number"),
    ("profile_start", 0, "train.profile_start=0 must be a step >= 1, or -1 (none)"),
    # ceil(414,218,240 tokens / (64 x 2050)) = 3158 updates
    ("profile_start", 3159, "train.profile_start=3159 is past the run's last step (3158): no trace "
     "would be recorded"),
])
def test_validation_refuses_meaningless_train_numbers(field, value, message):
    c = load_config("s20m")  # train.tokens > 0, so a bad train.steps is not hidden behind it
    c.train[field] = value
    with pytest.raises(ConfigError) as e:
        validate(c, n_devices=8)
    assert str(e.value) == message  # one line, for this field alone


@pytest.mark.parametrize("section,field,value,message", [
    # a zero batch or sequence length divided the token budget (ZeroDivisionError traceback)
    ("data", "seq_len", 0, "data.seq_len=0 must be in 1..model.max_seq_len=2050"),
    ("train", "batch_size", 0, "train.batch_size=0 must be positive"),
    # model fields that reached XLA (or divided by zero) before any check
    ("model", "multiple_of", 0, "model.multiple_of must be positive, got 0"),
    ("model", "hidden_dim", -5, "model.hidden_dim=-5 must be >= 0 (0 = the paper's rule)"),
    ("model", "norm_eps", -1.0, "model.norm_eps=-1.0 must be a number >= 0"),
    ("model", "norm_eps", float("nan"), "model.norm_eps=nan must be a number >= 0"),
    ("model", "init_std", float("inf"), "model.init_std=inf must be a number >= 0"),
    ("model", "rope_theta", 0.0, "model.rope_theta=0.0 must be a positive number"),
])
def test_validation_refuses_meaningless_sizes(section, field, value, message):
    c = load_config("s20m")
    c[section][field] = value
    with pytest.raises(ConfigError) as e:
        validate(c, n_devices=8)
    assert str(e.value) == message


@pytest.mark.parametrize("field", ["dtype", "param_dtype"])
def test_float16_training_is_refused(field):
    # No loss scaling: at the paper's batch sizes the softmax part of the logits' gradient
    # (~1/934,800 per token) is below float16's smallest subnormal (6e-8 / 2^-24 ~ 6e-8).
    c = load_config("tiny")
    c.model[field] = "float16"
    with pytest.raises(ConfigError) as e:
        validate(c, n_devices=1)
    assert str(e.value) == (f"model.{field}=float16 cannot train here: float16 gradients need "
                            "loss scaling, which slmjax does not do (use bfloat16)")


def test_fsdp_that_cannot_shard_the_width_is_a_warning(monkeypatch):
    from absl import logging
    logged = []
    monkeypatch.setattr(logging, "warning", lambda msg, *a: logged.append(msg % a if a else msg))
    c = load_config("tiny")
    c.model.dim, c.model.n_heads = 100, 1   # fsdp 8 does not divide 100, 4 does
    c.mesh.update(data=1, fsdp=8, tensor=1)
    validate(c, n_devices=8)
    assert logged == [
        "mesh.fsdp=8 does not divide model.dim=100: every weight and its optimizer state stay "
        "replicated over fsdp (no memory saved); choose an fsdp size that divides it"]
    logged.clear()
    c.mesh.update(data=2, fsdp=4, tensor=1)
    validate(c, n_devices=8)
    assert logged == []


def test_cudnn_attention_off_a_gpu_or_in_float32_is_one_line(monkeypatch):
    # It used to reach jax at the first step: a traceback ending "cuDNN is not detected."
    c = load_config("tiny")
    c.model.attention = "cudnn"
    with pytest.raises(ConfigError) as e:
        validate(c, n_devices=1)
    assert str(e.value) == "model.attention=cudnn needs a GPU; this run is on cpu"
    validate(c)  # without devices (a sweep's login node) the backend is not known
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    c.model.dtype = "float32"  # cuDNN's flash attention takes 16-bit q, k, v only
    with pytest.raises(ConfigError) as e:
        validate(c, n_devices=1)
    assert str(e.value) == "model.attention=cudnn needs model.dtype bfloat16 or auto, got float32"
    c.model.dtype = "auto"
    validate(c, n_devices=1)
    # shapes cuDNN cannot train on: one line here, not jax's NotImplementedError at the first step
    c.model.dim, c.model.n_heads = 96, 8                       # head_dim 12
    with pytest.raises(ConfigError, match=r"^model.attention=cudnn cannot take these shapes "
                                          r"\(head_dim 12 is not a multiple of 8\); use "
                                          r"model.attention=auto \(XLA's attention there\) or xla$"):
        validate(c, n_devices=1)
    c.model.dim, c.model.n_heads, c.data.seq_len = 128, 2, 63
    with pytest.raises(ConfigError, match=r"its backward needs an even sequence length, got 63"):
        validate(c, n_devices=1)
    from slmjax.model import attention, platform
    with platform.target("gpu"):                                # what auto picks on a GPU
        assert [attention.resolve("auto", jnp.bfloat16, h, t) for h, t in
                ((64, 2050), (12, 2050), (192, 2050), (64, 2049))] == ["cudnn", "xla", "xla", "xla"]
        assert attention.resolve("auto", jnp.float32, 64, 2050) == "xla"


def test_schedule_hand_computed():
    c = load_config("s20m")
    c.train.steps = 1001
    assert warmup_steps(c) == 100  # max(100, 1% of 1001 = 10)
    fn = schedule(c)
    # k: hand-computed lr. Warm-up 0 -> 5e-4 over 100 updates, then half-cosine over updates
    # 100..1000 (900 intervals), ending at 5e-5 on the final update (k = 1000).
    expected = {0: 0.0, 1: 5e-6, 50: 2.5e-4, 99: 4.95e-4, 100: 5e-4,
                325: 5e-5 + 0.5 * (1 + math.cos(math.pi * 0.25)) * 4.5e-4,
                550: 2.75e-4, 1000: 5e-5}
    for k, v in expected.items():
        assert abs(float(fn(k)) - v) < 1e-10 + 1e-6 * v, k
        assert abs(lr_at(c, k) - v) < 1e-12 + 1e-9 * v, k
    c.train.steps = 300_000  # 1% = 3000 -> capped at the release's 1000
    assert warmup_steps(c) == 1000
    c.train.steps = 20_000  # 1% = 200
    assert warmup_steps(c) == 200
    # Shorter than the warm-up rule (100): warm-up over 48 updates, peak at update 48, and the
    # final update (49) still at 5e-5.
    c.train.steps = 50
    assert warmup_steps(c) == 48
    for k, v in {0: 0.0, 24: 2.5e-4, 48: 5e-4, 49: 5e-5}.items():
        assert abs(float(schedule(c)(k)) - v) < 1e-10 + 1e-6 * v, k
        assert abs(lr_at(c, k) - v) < 1e-12 + 1e-9 * v, k
    c.train.steps = 2
    assert [lr_at(c, k) for k in (0, 1)] == [5e-4, 5e-5]


def test_adamw_update_by_hand():
    c = load_config("tiny")
    c.train.update(steps=11, warmup_min=0, warmup_frac=0.0)  # lr(0) = 5e-4, no warm-up
    tx = make_optimizer(c)
    params = {"w": jnp.full((2, 2), 2.0), "scale": jnp.full((2,), 2.0)}
    grads = {"w": jnp.array([[3.0, -4.0], [0.0, 0.0]]), "scale": jnp.array([0.0, 0.0])}
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    # clip to global norm 1: g = (0.6, -0.8, 0, 0); Adam step 1: m_hat / sqrt(v_hat) = g / |g|
    # (eps 1e-8 aside); decoupled weight decay 0.1 on w only.
    lr = 5e-4
    adam = np.array([[1.0, -1.0], [0.0, 0.0]]) * np.array([[0.6 / (0.6 + 1e-8), 0.8 / (0.8 + 1e-8)], [0, 0]])
    np.testing.assert_allclose(updates["w"], -lr * (adam + 0.1 * 2.0), rtol=1e-6)
    np.testing.assert_allclose(updates["scale"], 0.0, atol=0)
    assert float(optax.global_norm(grads)) == 5.0


def test_negative_seed_is_one_line():
    # It reached numpy's SeedSequence in the data pipeline (a ValueError traceback).
    c = load_config("tiny")
    c.seed = -1
    with pytest.raises(ConfigError) as e:
        validate(c, n_devices=1)
    assert str(e.value) == "seed=-1 must be an integer >= 0"


@pytest.mark.parametrize("section,field,value,message", [
    # 501^3 contexts x 17 successors: the n-gram model refused itself in a ValueError traceback
    ("data.synthetic", "order", 3,
     "data.synthetic: synthetic model too large: 500 units at order 3 with support 16"),
    # no unit at all (ids 0 = EOS, 1 = PAD): NumPy's 'Probabilities contain NaN' traceback
    ("model", "vocab_size", 2, "model.vocab_size=2 leaves data.kind=synthetic no unit (its ids "
     "are the units, then EOS and PAD): it must be >= 3"),
    # Dirichlet(inf) draws are NaN: the same traceback
    ("data.synthetic", "concentration", float("inf"),
     "data.synthetic.concentration=inf must be finite"),
    # the pipeline's own one-line refusal, which --dry_run did not make
    ("data.synthetic", "mean_utterance", 0.5, "data.synthetic.mean_utterance=0.5"),
])
def test_synthetic_data_problems_are_found_before_compute(section, field, value, message):
    """Synthetic-stream settings that passed validate() (so --dry_run printed a plan) and then
    stopped the run when the pipeline built the stream; the boundary values still train."""
    from slmjax.data import build_pipeline

    def config(v):
        c = load_config("tiny")
        c.data.synthetic.update(train_tokens=2000, test_tokens=500)
        node = c
        for k in section.split("."):
            node = node[k]
        node[field] = v
        return c

    with pytest.raises(Exception):  # what the run met after validation
        build_pipeline(config(value))
    with pytest.raises(ConfigError) as e:
        validate(config(value), n_devices=1)
    assert len(str(e.value).splitlines()) == 1
    assert str(e.value).startswith(message)
    ok = {"order": 2, "vocab_size": 3, "concentration": 1e-9, "mean_utterance": 1.0}[field]
    validate(config(ok), n_devices=1)


def test_an_incomplete_process_layout_is_one_line():
    # $JAX_NUM_PROCESSES without the coordinator and process id: DistributedError, whose message
    # is one line naming what is missing, reached the user as a traceback (--dry_run included).
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu", "JAX_NUM_PROCESSES": "2"}
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    env.pop("JAX_PROCESS_ID", None)
    proc = subprocess.Popen([sys.executable, "-m", "slmjax.train.cli",
                             "--config=configs/train.py:tiny", "--dry_run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _assert_one_line(proc, "multi-process JAX needs coordinator_address, num_processes and "
                     "process_id together (flags or $JAX_*): missing coordinator_address, process_id")


def test_a_one_update_run_makes_its_update_at_min_lr():
    # Its one update is the final one, which the paper's schedule runs at 5e-5; it ran at the
    # peak 5e-4 (the cosine's span steps - 1 - warm-up was 0, read as r = 0).
    c = load_config("s20m")
    c.train.steps = 1
    assert warmup_steps(c) == 0
    assert lr_at(c, 0) == 5e-5
    assert abs(float(schedule(c)(0)) - 5e-5) < 1e-10 + 1e-6 * 5e-5  # float32
    tx = make_optimizer(c)
    params = {"w": jnp.full((1, 2), 2.0)}
    grads = {"w": jnp.array([[0.3, -0.4]])}  # norm 0.5: not clipped
    updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step is g / |g| per element (eps aside), plus weight decay 0.1 * 2.0
    np.testing.assert_allclose(updates["w"], -5e-5 * (np.array([[1.0, -1.0]]) + 0.2), rtol=1e-6)


@pytest.mark.parametrize("value", [float("nan"), -float("inf")])
def test_a_non_positive_concentration_is_one_line(value):
    c = load_config("tiny")
    c.data.synthetic.concentration = value
    with pytest.raises(ConfigError) as e:
        validate(c, n_devices=1)
    assert str(e.value) == f"data.synthetic.concentration={value} must be positive"


def test_dry_run_opens_the_unit_datasets_as_the_run_does(tmp_path):
    # --dry_run printed a plan (exit 0) for a data.path that does not exist, holds a corrupt
    # manifest or a truncated shard, or whose vocabulary is not the model's; the run itself then
    # stopped at its start with one line. The dry run now says that line.
    from slmjax.data.testing import random_utterances, write_unit_dataset

    rng = np.random.default_rng(0)
    good = tmp_path / "good"
    write_unit_dataset(str(good), {"train": random_utterances(200, 60, rng),
                                   "test": random_utterances(20, 60, rng)}, vocab_size=60)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "manifest.json").write_text("{bad")
    truncated = tmp_path / "truncated"
    write_unit_dataset(str(truncated), {"train": random_utterances(200, 60, rng),
                                        "test": random_utterances(20, 60, rng)}, vocab_size=60,
                       n_shards=1)
    shard = truncated / "train-00000-of-00001.array_record"
    shard.write_bytes(shard.read_bytes()[:50])
    base = ["--config=configs/train.py:tiny", "--dry_run", "--config.data.kind=units",
            "--config.model.vocab_size=60"]
    bad = [
        ([f"--config.data.path={tmp_path / 'missing'}"], "unit dataset not found"),
        ([f"--config.data.path={corrupt}"], "manifest.json is not valid JSON"),
        ([f"--config.data.path={truncated}"], "truncated or corrupt"),
        ([f"--config.data.path={good}", "--config.model.vocab_size=102"],
         "manifest vocab_size 60 does not match config.model.vocab_size 102"),
    ]
    procs = [(_cli(*base, *args, devices=1), message) for args, message in bad]
    ok = _cli(*base, f"--config.data.path={good}", devices=1)
    for proc, message in procs:
        _assert_one_line(proc, message)
    out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["size"] == "tiny"


def test_a_mesh_that_cannot_fill_the_devices_names_them_in_plain_words():
    from slmjax.train.validate import mesh_shape
    c = load_config("tiny")
    c.mesh.update(data=2, fsdp=-1, tensor=1)
    for n, want in ((1, "cannot fill 1 device: 2 does not divide it"),
                    (3, "cannot fill 3 devices: 2 does not divide it")):
        with pytest.raises(ConfigError) as e:
            mesh_shape(c, n)
        assert str(e.value) == f"mesh {{'data': 2, 'fsdp': -1, 'tensor': 1}} {want}"
    assert mesh_shape(c, 4) == {"data": 2, "fsdp": 2, "tensor": 1}
