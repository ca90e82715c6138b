"""A real cpu_mini sweep (reduced to two runs) killed in the middle and launched again.

slmjax-sweep runs slmjax-train for each run; the sweep is killed with SIGKILL while the second run
trains (after its first checkpoint), then launched again: the first run is skipped, the second
resumes from its checkpoint, and both are completed exactly once.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REDUCED = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("cpu_mini", "{REPO}/configs/sweeps/cpu_mini.py")
mini = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mini)

def get_config(arg=None):
    c = mini.get_config(arg)
    c.train_config = "{REPO}/configs/train.py"
    for name in [n for n in c.sizes if n != "m30k"]:
        del c.sizes[name]
    c.sizes.m30k.ratios = (2, 4)
    c.multi_epoch.sizes = ()
    c.overrides.checkpoint = {{"every_steps": 10}}
    c.overrides.train = {{"log_every": 5}}
    return c
"""


def sweep(config, root):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-m", "slmjax.launch.cli", f"--config={config}",
                             f"--root={root}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow   # ~2.5 min on a shared 2-core machine (test_launch_local.py covers the same fast)
def test_killed_cpu_mini_sweep_finishes_every_run_exactly_once(tmp_path):
    config = tmp_path / "mini2.py"
    config.write_text(REDUCED)
    root = tmp_path / "root"
    first, second = root / "m30k_d6.0e4", root / "m30k_d1.2e5"

    proc = sweep(config, root)
    t0 = time.time()
    while not (second / "checkpoints" / "20").is_dir():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < 600, "the second run never reached its checkpoint at step 20"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0]
    first_rows, first_mtime = metrics(first), os.path.getmtime(first / "metrics.jsonl")
    assert json.loads((first / "run.json").read_text())["status"] == "completed", out
    assert json.loads((second / "run.json").read_text())["status"] != "completed"

    proc = sweep(config, root)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out
    assert "m30k_d6.0e4: completed, skipped" in out and "m30k_d1.2e5: resuming" in out

    # The completed run was not touched; the interrupted one resumed from a checkpoint >= 20.
    assert metrics(first) == first_rows and os.path.getmtime(first / "metrics.jsonl") == first_mtime
    run = json.loads((second / "run.json").read_text())
    assert run["status"] == "completed" and run["steps"] == 59 and run["resumed_from"] >= 20
    steps = [m["step"] for m in metrics(second) if "loss" in m]
    assert steps[-1] == 59 and sorted(set(steps)) == sorted(steps)   # no step logged twice
    events = [json.loads(line) for line in (root / "sweep.jsonl").read_text().splitlines()]
    assert [e["key"] for e in events if e["event"] == "completed"] == ["m30k_d6.0e4", "m30k_d1.2e5"]
    assert [e["key"] for e in events if e["event"] == "skip"] == ["m30k_d6.0e4"]
