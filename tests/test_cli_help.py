"""`--help` of every installed command shows what it does and its flags (DESIGN: `--help` on each)."""

import os
import subprocess
import sys

import pytest

BIN = os.path.dirname(sys.executable)


@pytest.mark.parametrize("command,says,flag", [
    ("slmjax-train", "train one model", "--workdir"),
    ("slmjax-synth", "slmjax-synth corpus --out=DIR", "--voices"),
    ("slmjax-units", "slmjax-units fit --audio=SRC", "--tokenizer"),
    ("slmjax-eval", "zero-shot sBLIMP", "--benchmarks"),
    ("slmjax-fit", "scaling-law fits", "--bootstrap"),
    ("slmjax-sweep", "expand a sweep config", "--launcher"),
])
def test_help_shows_the_usage_and_the_flags(command, says, flag):
  path = os.path.join(BIN, command)
  if not os.path.exists(path):
    pytest.skip(f"{command} is not installed in this environment")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120, env=env)
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]  # absl's --help exits 1
  assert says in proc.stdout and f"  {flag}" in proc.stdout, proc.stdout[:2000]
