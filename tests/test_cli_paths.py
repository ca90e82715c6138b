"""A leading `~` in a path flag is the home folder (slmjax.cli_help.DEFINE_path and friends).

No shell expands the `~` of `--flag=~/x` (it does so only at the start of a word or in an
assignment), so the commands get it literally and expand it themselves, as they parse the flag.
"""

import os
import subprocess
import sys

import pytest
from absl import flags

from slmjax import cli_help

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# (command line, what it says about $HOME/...): each stops early on a path that does not exist,
# naming it.
CASES = [
    (["slmjax-eval", "--workdir=~/run", "--benchmarks=~/bench"], "{home}/run/config.json"),
    (["slmjax-fit", "--runs=~/runs", "--out=~/fit"], "{home}/runs: not a directory"),
    (["slmjax-units", "fit", "--audio=~/audio,~/more", "--out=~/tok"],
     "audio source not found: {home}/audio"),
    (["slmjax-units", "fit", "--audio=home,~/more", "--out=~/tok"],
     "audio source not found: {home}/more"),
    (["slmjax-synth", "check", "--out=~/bench"], "{home}/bench: no benchmark sets"),
    (["slmjax-train", "--config=~/train.py:s20m", "--dry_run"], "'{home}/train.py'"),
    (["slmjax-sweep", "--config=~/sweep.py", "--root=runs", "--dry_run"], "'{home}/sweep.py'"),
]


@pytest.mark.parametrize("argv,says", CASES, ids=[argv[0] for argv, _ in CASES])
def test_a_leading_tilde_in_a_path_flag_is_the_home_folder(argv, says, tmp_path):
    path = os.path.join(BIN, argv[0])
    if not os.path.exists(path):
        pytest.skip(f"{argv[0]} is not installed in this environment")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["HOME"] = str(home)
    proc = subprocess.run([path, *argv[1:]], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out[-2000:]
    assert says.format(home=home) in out, out[-2000:]
    assert not (tmp_path / "~").exists()


def test_path_flags_expand_a_leading_tilde_once_and_keep_other_paths(monkeypatch):
    monkeypatch.setenv("HOME", "/home/u")
    fv = flags.FlagValues()
    one = cli_help.DEFINE_path("one", None, "a path", flag_values=fv)
    several = cli_help.DEFINE_path("several", None, "paths", comma_separated=True, flag_values=fv)
    items = cli_help.DEFINE_path_list("items", [], "paths", flag_values=fv)
    fv(["prog", "--one=~/a/~b", "--several=~/x,rel/y,~/z", "--items=~,~/p,./~q,~nosuchuser_xyz/r"])
    assert one.value == "/home/u/a/~b"
    assert several.value == "/home/u/x,rel/y,/home/u/z"
    assert items.value == ["/home/u", "/home/u/p", "./~q", "~nosuchuser_xyz/r"]
    fv(["prog", "--one=runs/a"])
    assert one.value == "runs/a"   # relative paths are kept as given
