"""Command lines of one run: `slmjax-train` arguments, and how the local launcher finds the script."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from slmjax.launch.grid import Run, SweepError

TRAIN_SCRIPT = "slmjax-train"


def flag_value(value: Any) -> str:
    """A Python value as ml_collections' `--config.a.b=` parser reads it back.

    A string goes as is; a tuple as a Python literal, which that parser evaluates."""
    if isinstance(value, (tuple, list)):
        return _literal(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        raise SweepError("an override cannot be None: leave the field out instead")
    return _number(value) if isinstance(value, float) else str(value)


def _number(value: float) -> str:
    return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _literal(value: Any) -> str:
    """`value` as Python source: tuples without spaces, strings quoted, floats as `_number`."""
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, float):
        return _number(value)
    return repr(value)


def train_args(run: Run, train_config: str | None = None) -> list[str]:
    """slmjax-train's arguments for `run` (without the program name).

    `train_config` replaces the config path (e.g. the absolute path the local launcher uses)."""
    config = run.train_config
    if train_config is not None:
        config = train_config + ":" + run.train_config.rsplit(":", 1)[1]
    return [f"--config={config}", f"--workdir={run.workdir}"] + [
        f"--config.{k}={flag_value(v)}" for k, v in run.overrides]


def local_train_program() -> list[str]:
    """How to start slmjax-train here: the script beside this Python, else on PATH, else -c."""
    beside = os.path.join(os.path.dirname(sys.executable), TRAIN_SCRIPT)
    if os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which(TRAIN_SCRIPT)
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from slmjax.train.cli import run; "
            f"sys.argv[0] = {TRAIN_SCRIPT!r}; run()"]
