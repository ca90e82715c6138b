"""What a sweep root says about its runs: run.json status, and the sweep's event log."""

from __future__ import annotations

import json
import os
import time
from typing import Any

EVENTS = "sweep.jsonl"
TAG = "slmjax-status"   # marks status lines among whatever else a remote shell prints
TRAINER_TAG = "slmjax-trainer"   # the line naming a trainer still running on the machine (or null)
TRAINER_PROGRAM = "slmjax-train"
CONFIG_TAG = "slmjax-config"   # a completed run's recorded config (or null), one line per workdir


def _run_json(workdir: str) -> dict:
    with open(os.path.join(workdir, "run.json")) as f:
        return json.load(f)


def final_loss(workdir: str) -> float | None:
    """run.json's final_test_loss, None when absent."""
    try:
        value = _run_json(workdir).get("final_test_loss")
        return float(value) if value is not None else None
    except Exception:  # noqa: BLE001
        return None


def run_status(workdir: str) -> str | None:
    """The `status` field of workdir/run.json ('running', 'completed', ...), None when absent.

    An unreadable file gives None (the trainer then decides: it resumes or returns)."""
    try:
        return _run_json(workdir).get("status")
    except Exception:  # noqa: BLE001 - absent, half-visible or unreachable all mean "not known done"
        return None


def is_completed(workdir: str) -> bool:
    return run_status(workdir) == "completed"


def completed_config(workdir: str) -> dict | None:
    """{"config": config.json, "compute_dtype": run.json's} of a completed run, for a launcher
    that cannot read the workdir to tell whether it is its run; None for any other run or when
    either file cannot be read."""
    from slmjax import fileio

    try:
        run = fileio.read_json_object(os.path.join(workdir, "run.json"))
        if run.get("status") != "completed":
            return None
        config = fileio.read_json_object(os.path.join(workdir, "config.json"))
    except Exception:  # noqa: BLE001 - unreadable: the trainer's own check decides
        return None
    return {"config": config, "compute_dtype": run.get("compute_dtype")}


def config_line(workdir: str) -> str:
    return f"{CONFIG_TAG} {json.dumps(completed_config(workdir))}"


def parse_config_lines(text: str) -> list[dict | None]:
    """The recorded configs of the config lines in `text`, in order."""
    return _tagged(text, CONFIG_TAG)


def status_line(status: str | None) -> str:
    """One tagged line: TAG then the status as JSON (null: no readable run.json)."""
    return f"{TAG} {json.dumps(status)}"


def _tagged(text: str, tag: str) -> list:
    """The JSON values of the lines of `text` that start with `tag`, in order."""
    found = []
    for line in text.splitlines():
        first, _, value = line.strip().partition(" ")
        if first != tag:
            continue
        try:
            found.append(json.loads(value))
        except json.JSONDecodeError:
            continue
    return found


def parse_status_lines(text: str) -> list[str | None]:
    """The statuses of the tagged lines in `text`, in order; any other line is skipped."""
    return _tagged(text, TAG)


def live_trainer(pidfile: str) -> int | None:
    """The pid recorded in `pidfile` while that process is still a trainer, else None.

    The file outlives a trainer that ended, and its pid may since name another process: the
    process's command line must hold the trainer's name (as launch/tpu_stop.sh checks)."""
    try:
        with open(os.path.expanduser(pidfile)) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (OSError, ValueError):
        return None
    return pid if TRAINER_PROGRAM.encode() in cmdline else None


def trainer_line(pid: int | None) -> str:
    return f"{TRAINER_TAG} {json.dumps(pid)}"


def parse_trainer_line(text: str) -> int | None:
    """The pid of the (last) trainer line in `text`; None when it says none or is absent."""
    found = _tagged(text, TRAINER_TAG)
    return found[-1] if found and isinstance(found[-1], int) else None


def log_event(root: str, event: str, key: str, **fields: Any) -> None:
    """Append one line to <root>/sweep.jsonl and flush it to disk."""
    os.makedirs(root, exist_ok=True)
    line = json.dumps({"time": round(time.time(), 3), "event": event, "key": key, **fields})
    with open(os.path.join(root, EVENTS), "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_events(root: str) -> list[dict]:
    """Events of <root>/sweep.jsonl; a torn last line (a killed writer) is skipped."""
    out = []
    try:
        with open(os.path.join(root, EVENTS)) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return out


def _main(argv: list[str]) -> None:
    """python -m slmjax.launch.status [--trainer_pidfile=PATH] [--configs] WORKDIR...: one status
    line per workdir (the SLURM job script compares it whole), after a trainer line when a pid file
    is given; with --configs each followed by its config line (the TPU launcher's)."""
    pidfile_flag = "--trainer_pidfile="
    if argv and argv[0].startswith(pidfile_flag):
        print(trainer_line(live_trainer(argv[0][len(pidfile_flag):])))
        argv = argv[1:]
    configs = bool(argv) and argv[0] == "--configs"
    for workdir in argv[configs:]:
        print(status_line(run_status(workdir)))
        if configs:
            print(config_line(workdir))


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
