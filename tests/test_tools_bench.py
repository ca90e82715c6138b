"""The benchmarks' command lines: a bad argument is one line on stderr, never a traceback."""

import json
import os
import re
import subprocess
import sys

import pytest

_ABSL_LOG = re.compile(r"[IWE]\d{4} ")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tool, *args, timeout=120):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # as a user runs it: the tool splits the host itself
    return subprocess.run([sys.executable, os.path.join("tools", tool), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _one_line(proc, tool):
    """The single stderr line of a refused run (absl's I/W log lines aside)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not _ABSL_LOG.match(ln)]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


TINY = "--config=configs/train.py:tiny"


@pytest.mark.parametrize("tool,args,names", [
    ("bench_train.py", (TINY, "--steps=0"), "--steps"),
    ("bench_train.py", (TINY, "--warmup=-1"), "--warmup"),
    ("bench_train.py", (TINY, "--batch_size=0"), "--batch_size"),
    ("bench_train.py", (TINY, "--dtype=float16"), "--dtype"),  # the baseline has no float16 path
    ("bench_train.py", (TINY, "--baselines=eager,compiled"), "compiled"),  # ran eager as 'compiled'
    ("bench_train.py", ("--config=configs/missing.py",), "configs/missing.py"),
    ("bench_attention.py", ("--seq_len=0",), "--seq_len"),
    ("bench_attention.py", ("--rounds=0",), "--rounds"),
    ("bench_attention.py", ("--libraries=numpy,blis",), "--libraries"),
    ("bench_data.py", ("--batch=0",), "--batch"),
    ("bench_data.py", ("--modes=windows,pakced",), "pakced"),
    ("bench_data.py", ("--mean_utterance=1",), "--mean_utterance"),
    ("bench_eval.py", ("--repeats=0",), "--repeats"),
    ("bench_eval.py", ("--size=s21m",), "--size"),
    ("bench_units.py", ("--repeats=0",), "--repeats"),
    ("bench_fit.py", ("--huber_replicates=0",), "--huber_replicates"),
])
def test_a_bad_flag_is_one_line(tool, args, names):
    assert names in _one_line(_run(tool, *args), tool)


def test_a_config_problem_is_one_line():
    """validate() refuses the config: its message, not a ConfigError traceback."""
    line = _one_line(_run("bench_train.py", TINY,
                          "--config.model.n_heads=3", "--baselines="), "bench_train.py")
    assert "model.n_heads=3 does not divide model.dim=128" in line


def test_the_pytorch_baseline_uses_the_cores_this_process_may_run_on():
    """os.cpu_count() counts the whole host; under a CPU set (a container, taskset) the baseline
    would run more threads than it has cores while JAX uses the cores it may run on."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    pytest.importorskip("transformers")
    proc = _with_bench_train(
        "import os, torch\n"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
        "from slmjax.model import ModelConfig\n"
        "cfg = ModelConfig(vocab_size=16, dim=16, n_layers=1, n_heads=2, max_seq_len=8)\n"
        "m.torch_runner(cfg, 1, 8, 'float32', False)\n"
        "print(torch.get_num_threads(), os.cpu_count())\n")
    threads, _ = proc.stdout.split()[-2:]
    assert threads == "1"


def _with_bench_train(code: str):
    """Runs `code` in a fresh interpreter with tools/bench_train.py loaded as `m`; asserts it exits 0."""
    load = ("import importlib.util\n"
            "spec = importlib.util.spec_from_file_location('bench_train', 'tools/bench_train.py')\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n")
    proc = subprocess.run([sys.executable, "-c", load + code], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO}/tools"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_bench_fit_divides_each_time_by_the_replicates_it_ran():
    """With 20 replicates, the 'first 200' and Huber steps run 20: their ms per replicate (and the
    speed-ups from them) were divided by 200 and 50."""
    proc = _run("bench_fit.py", "--replicates=20", "--huber_replicates=50", "--baseline_replicates=1",
                "--workers=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    reps = {}
    for line in proc.stdout.splitlines():
        parts = line.rsplit(None, 3)
        if len(parts) == 4 and parts[1].isdigit():
            reps[parts[0].strip()] = int(parts[1])
    assert reps == {"VP point fit (150x150 grid + polish)": 1, "VP bootstrap, 1 workers": 20,
                    "VP bootstrap, 1 worker (first 20)": 20,
                    "VP bootstrap, 1 worker, dense grid (first 20)": 20,
                    "baseline: scipy NNLS loop per replicate": 1,
                    "Huber point fit (4,500 starts, 64 L-BFGS)": 1, "Huber bootstrap, 1 workers": 20}


def test_bench_train_times_each_runner_by_its_median_step():
    """Two timed steps of 10 and 110 ms: the median is 60 ms (the upper of the two was taken).
    A sleep only ever overruns (by the wake-up delay, tens of ms when other tests load the cores),
    so the bound below is one-sided and far from 110 ms."""
    proc = _with_bench_train(
        "import time\n"
        "waits = iter([0.0, 0.01, 0.11])\n"
        "print(m._interleaved({'a': lambda: time.sleep(next(waits))}, steps=2, warmup=1)['a'])\n")
    assert 0.059 < float(proc.stdout.split()[-1]) < 0.09


def test_bench_train_runs_without_grain(tmp_path):
    """The GPU image tools/device_bench.sh runs on has JAX, Flax, optax and PyTorch but no Grain
    or ArrayRecord (the input pipeline's packages, which the bench does not use): the config check
    of data.kind=synthetic imported slmjax.data, whose __init__ loaded the Grain pipeline, and every
    size stopped there with ModuleNotFoundError."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('grain', 'array_record'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Absent())\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "SLMJAX_ALLOCATOR": "system",
           "PYTHONPATH": f"{tmp_path}:{REPO}"}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, os.path.join("tools", "bench_train.py"), TINY,
                           "--batch_size=2", "--steps=1", "--warmup=0", "--baselines="],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["tokens_per_sec"] > 0


def test_the_pytorch_baseline_decays_only_matrices_as_our_optimizer():
    """Our AdamW decays parameters of ndim >= 2 only (the paper; slmjax.train.optim.decay_mask);
    the baseline's AdamW decayed the RMSNorm scales too."""
    pytest.importorskip("transformers")
    proc = _with_bench_train(
        "import torch\n"
        "groups = []\n"
        "class AdamW(torch.optim.AdamW):\n"
        "    def __init__(self, params, **kw):\n"
        "        super().__init__(params, **kw)\n"
        "        groups.extend(self.param_groups)\n"
        "torch.optim.AdamW = AdamW\n"
        "from slmjax.model import ModelConfig\n"
        "cfg = ModelConfig(vocab_size=16, dim=16, n_layers=1, n_heads=2, max_seq_len=8)\n"
        "m.torch_runner(cfg, 1, 8, 'float32', False)\n"
        "for g in groups:\n"
        "    print('group', g['weight_decay'], sorted({p.ndim for p in g['params']}), g['lr'],\n"
        "          g['betas'], g['eps'])\n")
    groups = sorted(ln.split(" ", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith("group"))
    assert groups == ["0.0 [1] 0.0005 (0.9, 0.95) 1e-08", "0.1 [2] 0.0005 (0.9, 0.95) 1e-08"]


@pytest.mark.parametrize("baselines,expected", [("eager", "false"), ("", None)])
def test_bench_train_leaves_gpu_memory_to_the_pytorch_baseline(baselines, expected):
    """JAX preallocates 75% of a GPU at its first use: with a PyTorch baseline in the same process
    the bench turns that off before JAX starts (a run of ours alone keeps JAX's default)."""
    if baselines:
        pytest.importorskip("transformers")
    proc = _with_bench_train(
        "import os\n"
        "os.environ.pop('XLA_PYTHON_CLIENT_PREALLOCATE', None)\n"
        "os.environ['JAX_PLATFORMS'] = 'cpu'\n"
        "m.flags.FLAGS(['bench_train.py', '--config=configs/train.py:tiny', '--batch_size=8',\n"
        f"              '--steps=1', '--warmup=0', '--baselines={baselines}'])\n"
        "m.main([])\n"
        "print('PREALLOCATE', os.environ.get('XLA_PYTHON_CLIENT_PREALLOCATE'))\n")
    assert proc.stdout.splitlines()[-1] == f"PREALLOCATE {expected}"


def test_the_pytorch_baseline_runs_float32_matmuls_as_tf32_on_cuda_as_jax_does():
    """JAX's default precision runs a float32 dot on an A100/H100/H200 as TF32 (the peak table's
    f32 figure); PyTorch's default on CUDA is full FP32, about half the TF32 rate on an H100."""
    pytest.importorskip("transformers")
    proc = _with_bench_train(
        "import torch\n"
        "from slmjax.model import ModelConfig\n"
        "cfg = ModelConfig(vocab_size=16, dim=16, n_layers=1, n_heads=2, max_seq_len=8)\n"
        "m.torch_runner(cfg, 1, 8, 'float32', False)\n"
        "mm = torch.backends.cuda.matmul\n"
        "print(mm.fp32_precision == 'tf32' if hasattr(mm, 'fp32_precision') else mm.allow_tf32)\n")
    assert proc.stdout.split()[-1] == "True"
