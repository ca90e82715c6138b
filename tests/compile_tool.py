"""Running tools/compile_step.py (or code beside it) in a subprocess: the TPU and GPU compilers are
loaded there only, before JAX starts, with none of the test process's device flags."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(args, code=None, **env_vars) -> subprocess.CompletedProcess:
    """tools/compile_step.py ARGS (or `python -c CODE ARGS`) from the repo root."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS", "XLA_CLIENT_MEM_FRACTION")
           and not k.startswith(("TPU_", "XLA_PYTHON_CLIENT_"))}
    env["PYTHONPATH"] = ROOT + os.pathsep + os.path.join(ROOT, "tools")
    env.update(env_vars)
    cmd = [sys.executable] + (["-c", code] if code else [os.path.join(ROOT, "tools", "compile_step.py")]) + args
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def one_line(proc, *parts) -> None:
    """The run failed (status 2) with one line on stderr holding every part."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and all(p in lines[0] for p in parts), proc.stderr[-3000:]
