"""What a sweep root says about its runs: run.json status, and the sweep's event log."""

from __future__ import annotations

import json
import os
import time
from typing import Any

EVENTS = "sweep.jsonl"
TAG = "slmjax-status"   # marks status lines among whatever else a remote shell prints


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


def status_line(status: str | None) -> str:
    """One tagged line: TAG then the status as JSON (null: no readable run.json)."""
    return f"{TAG} {json.dumps(status)}"


def parse_status_lines(text: str) -> list[str | None]:
    """The statuses of the tagged lines in `text`, in order; any other line is skipped."""
    found = []
    for line in text.splitlines():
        tag, _, value = line.strip().partition(" ")
        if tag != TAG:
            continue
        try:
            found.append(json.loads(value))
        except json.JSONDecodeError:
            continue
    return found


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


if __name__ == "__main__":   # python -m slmjax.launch.status WORKDIR...: one status line each
    import sys

    for workdir in sys.argv[1:]:
        print(status_line(run_status(workdir)))
