"""Launching small training runs in subprocesses (own device count, killable) for loop tests."""

import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The `tiny` preset, cut down so that a run takes seconds on a shared 2-core CPU.
TINY = {"train.steps": 24, "train.log_every": 1, "train.eval_every": 8, "train.eval_batches": 2,
        "checkpoint.every_steps": 8, "checkpoint.keep": 5, "data.seq_len": 32,
        "train.batch_size": 8, "model.vocab_size": 34, "train.peak_flops": 1e11,
        "train.progress": False, "train.warmup_min": 4, "train.lr": 3e-3,
        "data.synthetic.train_tokens": 60000, "data.synthetic.test_tokens": 4096,
        "data.synthetic.order": 1}

_RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("train_config", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
cfg = mod.get_config("tiny")
for k, v in json.loads(sys.argv[3]).items():
  node = cfg
  *path, last = k.split(".")
  for p in path:
    node = node[p]
  node[last] = v
exec(sys.argv[4])  # a test's hook: code that patches the trainer before it runs ("" = none)
from slmjax.train.loop import train
train(cfg, sys.argv[2])
"""


def launch(workdir, devices=8, hook="", **overrides):
  """Starts a run of TINY (+ overrides, dotted keys with '__' for '.') in a subprocess; `hook` is
  Python run in it before training (with `sys.argv[2]` the workdir)."""
  flat = dict(TINY)
  flat.update({k.replace("__", "."): v for k, v in overrides.items()})
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return subprocess.Popen(
      [sys.executable, "-c", _RUNNER, os.path.join(ROOT, "configs", "train.py"), str(workdir),
       json.dumps(flat), hook], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, preexec_fn=sigint_as_from_a_terminal)


def sigint_as_from_a_terminal():
  # A test session started in the background inherits SIGINT ignored, which the trainer (by
  # design) leaves ignored: the Ctrl-C tests need the SIGINT of a trainer started in a terminal.
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(workdir, devices=8, timeout=600, **overrides):
  p = launch(workdir, devices, **overrides)
  out, _ = p.communicate(timeout=timeout)
  assert p.returncode == 0, out[-3000:]
  return out


def run_until(workdir, step, sig, devices=8, timeout=600, hook="", **overrides):
  """Runs until metrics.jsonl shows `step`, then sends `sig`; returns (returncode, output)."""
  p = launch(workdir, devices, hook, **overrides)
  path = os.path.join(workdir, "metrics.jsonl")
  end = time.time() + timeout
  while time.time() < end and p.poll() is None:
    if os.path.exists(path) and any(json.loads(l).get("step", 0) >= step
                                    for l in open(path) if l.strip()):
      p.send_signal(sig)
      break
    time.sleep(0.05)
  out, _ = p.communicate(timeout=timeout)
  return p.returncode, out


def train_rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f if l.strip()]
  return [r for r in rows if "loss" in r], [r for r in rows if "test_loss" in r]


SIGKILL, SIGTERM = signal.SIGKILL, signal.SIGTERM


def cli(module, *args, timeout=900):
  """Runs `python -m module args` on 8 fake devices; asserts it succeeded and returns the result."""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "PYTHONPATH": ROOT}
  res = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                       env=env, timeout=timeout, cwd=ROOT)
  assert res.returncode == 0, f"{module} {args}: {res.stderr[-3000:]}"
  return res


def outputs_of(procs, timeout, stuck):
  """Each process's output once it exits; past `timeout` s every process is killed and the test
  fails with `stuck` and the last lines of the one that hung."""
  outs = []
  for p in procs:
    try:
      outs.append(p.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      import pytest  # pylint: disable=g-import-not-at-top
      pytest.fail(f"{stuck}: " + p.communicate()[0][-1500:])
  return outs


def small_pipeline():
  """A tiny synthetic data pipeline (vocab 18, windows of 8, batch 2) for checkpoint tests."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from slmjax.data import build_pipeline  # pylint: disable=g-import-not-at-top
  return build_pipeline(ml_collections.ConfigDict(dict(
      seed=0, model=dict(vocab_size=18),
      data=dict(kind="synthetic", mode="windows", seq_len=8,
                synthetic=dict(train_tokens=4000, test_tokens=400, order=1)),
      train=dict(batch_size=2))))
