"""tools/checkpoint.py on a real two-step run: inspect counts by hand, export round-trips exactly."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "PYTHONPATH": REPO,
       "SLMJAX_ALLOCATOR": "system"}


def _tool(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "checkpoint.py"), *args],
                          env=ENV, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("run") / "tiny")
    proc = subprocess.run(
        [sys.executable, "-m", "slmjax.train.cli", "--config=configs/train.py:tiny", f"--workdir={wd}",
         "--config.train.steps=2", "--config.data.seq_len=32", "--config.train.batch_size=4",
         "--config.train.final_eval_batches=1", "--config.train.progress=false"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return wd


def test_inspect_counts_every_parameter(run):
    proc = _tool("inspect", run)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    m = json.load(open(os.path.join(run, "config.json")))["model"]
    d, layers, v = m["dim"], m["n_layers"], m["vocab_size"]
    f = 256 * -(-int(8 * d / 3) // 256)  # the paper's SwiGLU hidden size rule (multiple of 256)
    per_layer = 4 * d * d + 3 * d * f + 2 * d  # wq wk wv wo, w1 w2 w3, two RMSNorm scales
    expected = v * d + layers * per_layer + d   # tied embedding, final norm
    assert result["n_params"] == result["n_params_model"] == expected
    assert result["step"] == 2 and result["non_finite"] == [] and result["status"] == "completed"
    assert result["n_tensors"] == 1 + 9 * layers + 1


def test_export_writes_the_release_format_exactly(run, tmp_path):
    from slmjax.model import load_release_checkpoint
    from slmjax.train.checkpoint import restore_params

    out = str(tmp_path / "release")
    proc = _tool("export", run, f"--out={out}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    cfg, params, step = restore_params(run)
    cfg2, params2 = load_release_checkpoint(out)
    arch = ("n_layers", "dim", "n_heads", "head_dim", "ffn_dim", "vocab_size", "rope_theta", "norm_eps")
    assert [getattr(cfg2, a) for a in arch] == [getattr(cfg, a) for a in arch] and step == 2
    assert jax.tree.structure(params2) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_weights_read_back_take_this_platforms_attention(run, tmp_path):
    """A run trained on TPU records model.attention=splash; read back here (CPU), the weights are
    scored with the kernel auto picks (splash off a TPU runs in Pallas's interpreter, ~12x slower)."""
    import shutil

    from slmjax.model.attention import resolve
    from slmjax.train.checkpoint import restore_params

    tpu_run = str(tmp_path / "tpu_run")
    shutil.copytree(run, tpu_run)
    config = json.load(open(os.path.join(tpu_run, "config.json")))
    config["model"]["attention"] = "splash"
    json.dump(config, open(os.path.join(tpu_run, "config.json"), "w"))
    cfg, params, _ = restore_params(tpu_run)
    assert cfg.attention == "auto" and resolve(cfg.attention, jnp.float32) == "blockwise"
    _, want, _ = restore_params(run)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_calls_are_one_line(run, tmp_path):
    (tmp_path / "a_file").write_text("")
    (tmp_path / "sharded").mkdir()
    (tmp_path / "sharded" / "model.safetensors.index.json").write_text("{}")
    for args, message in [(["inspect", str(tmp_path / "none")], "no such run directory"),
                          # these two were a traceback (NotADirectoryError), and an export that
                          # wrote model.safetensors beside an index: a directory nothing loads
                          (["export", run, f"--out={tmp_path / 'a_file' / 'x'}"], "cannot write"),
                          (["export", run, f"--out={tmp_path / 'sharded'}"], "already holds sharded"),
                          (["export", run], "export needs --out=DIR"),
                          (["show", run], "usage: tools/checkpoint.py"),
                          (["inspect", run, "--step=7"], "has no checkpoint at step 7")]:
        proc = _tool(*args)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("checkpoint: ")
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


_PEAK = """
import importlib.util, json, sys, tracemalloc
import numpy as np
from slmjax.model import ModelConfig
spec = importlib.util.spec_from_file_location("checkpoint_tool", sys.argv[1])
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
params = {f"w{i}": np.full((1024, 1024), 0.5, np.float32) for i in range(8)}  # 4 MiB each
tool._restore = lambda wd: (ModelConfig(), params, 7)
tracemalloc.start()
result = tool.inspect("/nonexistent-run")
print(json.dumps({"peak": tracemalloc.get_traced_memory()[1], **result}))
"""


def test_inspect_makes_float64_copies_one_parameter_at_a_time():
    """inspect's extra memory is one parameter in float64, not all of them (8 bytes per parameter
    at once: 6.6 GB beside the s823m weights). In a process of its own: the tool defines absl flags
    that other modules of the suite define too."""
    proc = subprocess.run([sys.executable, "-c", _PEAK, os.path.join(REPO, "tools", "checkpoint.py")],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["n_params"] == 8 * 1024 * 1024 and result["non_finite"] == []
    rows = [l for l in lines if l.startswith("| w")]
    assert len(rows) == 8 and all(l.split("|")[3].strip() == "0.5" for l in rows), rows
    # one float64 copy (8 MiB) and change; all at once: 86 MiB
    assert result["peak"] < 3 * 8 * 2**20, result["peak"]
