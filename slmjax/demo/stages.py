"""A resumable chain of stages with progress and an ETA.

Each stage runs a command (usually one of slmjax's console scripts) and is marked done by a small
JSON file under ``<out>/.stages/`` written only after the command succeeded; a rerun skips it.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Callable, Sequence

from slmjax import fileio


@dataclasses.dataclass
class Stage:
    """One step of the chain.

    name: short id, also the name of the done-marker.
    title: what a person reads in the progress line.
    estimate_s: expected seconds on a 2-core CPU; only used to share out the ETA.
    commands: a callable returning the command lines to run (built lazily, so that a stage can
      depend on files that earlier stages wrote).
    after: an optional callable run after the commands succeed (e.g. to write a report).
    """

    name: str
    title: str
    estimate_s: float
    commands: Callable[[], Sequence[Sequence[str]]]
    after: Callable[[], None] | None = None


def _fmt(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:d}m{seconds % 60:02d}s"


class StageError(RuntimeError):
    """A stage's command failed; the message names the stage and the command."""


def run_stages(stages: Sequence[Stage], out: str, env: dict | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Runs the stages in order, skipping those already done. Returns {name: seconds or 'skipped'}."""
    marker_dir = os.path.join(out, ".stages")
    os.makedirs(marker_dir, exist_ok=True)
    total_estimate = sum(s.estimate_s for s in stages)
    start = time.time()
    done_estimate = 0.0  # estimated seconds of the stages run in this invocation
    timings = {}
    for i, stage in enumerate(stages):
        marker = os.path.join(marker_dir, stage.name + ".json")
        remaining_estimate = sum(s.estimate_s for s in stages[i:])
        if os.path.exists(marker):
            log(f"[{i + 1}/{len(stages)}] {stage.title}: done before, skipped")
            timings[stage.name] = "skipped"
            total_estimate -= stage.estimate_s
            continue
        elapsed = time.time() - start
        speed = elapsed / done_estimate if done_estimate > 0 else 1.0
        log(f"[{i + 1}/{len(stages)}] {stage.title} (elapsed {_fmt(elapsed)}, "
            f"ETA {_fmt(remaining_estimate * speed)})")
        t0 = time.time()
        for cmd in stage.commands():
            log("  $ " + " ".join(shlex.quote(c) for c in cmd))
            proc = subprocess.run(list(cmd), env=env, stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                raise StageError(f"stage '{stage.name}' failed (exit {proc.returncode}) running: "
                                 + " ".join(shlex.quote(c) for c in cmd))
        if stage.after is not None:
            stage.after()
        seconds = time.time() - t0
        timings[stage.name] = round(seconds, 1)
        done_estimate += stage.estimate_s
        fileio.atomic_write_json(marker, {"seconds": seconds, "finished": time.time()})
    log(f"all stages done in {_fmt(time.time() - start)}")
    return timings


def code_digest(repo: str) -> str:
    """Digest of the code that makes the demo's outputs: ``repo``'s slmjax/ and configs/ (every
    *.py, by relative path and content)."""
    h = hashlib.sha256()
    for top in ("slmjax", "configs"):
        for path in sorted(glob.glob(os.path.join(repo, top, "**", "*.py"), recursive=True)):
            h.update(os.path.relpath(path, repo).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(f.read() + b"\0")
    return h.hexdigest()[:16]


_AGAIN = "use another --out, or delete it to start again"


def _read_settings(path: str) -> dict | None:
    """The recorded settings, or None when the file is not a JSON object (the demo did not write it)."""
    try:
        with open(path) as f:
            before = json.load(f)
    except ValueError:
        return None
    return before if isinstance(before, dict) else None


def _foreign_entries(out: str) -> list[str]:
    """What ``out`` holds besides ``.stages/`` (sorted; empty when ``out`` does not exist)."""
    try:
        return sorted(e for e in os.listdir(out) if e != ".stages")
    except FileNotFoundError:
        return []


def check_settings(out: str, now: dict) -> str | None:
    """None if ``out`` is new or was made with ``now``'s settings (then recorded); else why not.

    Finished stages are skipped on a rerun, so a folder made with other settings, or by other code
    (`code_sha256`; a first slmjax recorded no settings at all), or holding files of its own (another
    sweep's runs) would silently mix old corpus, runs or fits into the report."""
    path = os.path.join(out, ".stages", "settings.json")
    if os.path.exists(path):
        before = _read_settings(path)
        if before is None:
            return f"{path} is not a JSON object of the demo's settings: {_AGAIN}"
        diff = [f"{k}: {before.get(k)!r} -> {v!r}" for k, v in now.items() if before.get(k) != v]
        if "code_sha256" in now and before.get("code_sha256") != now["code_sha256"]:
            return (f"{out} was made by other slmjax code (slmjax/ and configs/ digest "
                    f"{before.get('code_sha256')} -> {now['code_sha256']}): its runs and scores would "
                    f"not be this code's; {_AGAIN}")
        if diff:
            return f"{out} was made with other settings ({'; '.join(diff)}): {_AGAIN}"
    elif glob.glob(os.path.join(out, ".stages", "*.json")):
        return f"{out} holds finished stages but no record of their settings (an older slmjax): {_AGAIN}"
    elif foreign := _foreign_entries(out):
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        return f"{out} holds files not made by the demo ({shown}): {_AGAIN}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fileio.atomic_write_json(path, now)
    return None


def console_script(name: str) -> list[str]:
    """The command that runs one of slmjax's console scripts with this interpreter."""
    bindir = os.path.dirname(sys.executable)
    path = os.path.join(bindir, name)
    if os.path.exists(path):
        return [path]
    module = {
        "slmjax-synth": "slmjax.synth.cli",
        "slmjax-units": "slmjax.units.cli",
        "slmjax-train": "slmjax.train.cli",
        "slmjax-eval": "slmjax.analysis.zeroshot.cli",
        "slmjax-fit": "slmjax.analysis.scaling.cli",
        "slmjax-sweep": "slmjax.launch.cli",
    }[name]
    return [sys.executable, "-c", f"import {module} as m; m.run()"]
