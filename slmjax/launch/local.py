"""Local launcher: the sweep's runs one after another on this machine.

A completed run (run.json status 'completed') is skipped; any other run is started with its
workdir, and the trainer resumes it from its last checkpoint. So a killed sweep, launched again,
loses at most the work since the last checkpoint and trains every run to completion exactly once.
One sweep at a time per root (a lock file); the trainer dies with the sweep (parent-death signal),
so a killed sweep never leaves a trainer behind to race its successor. Each run's output goes to
<root>/logs/<key>.log (appended across launches) unless `stream` sends it to this terminal.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import TextIO

from slmjax import fileio
from slmjax.fileio import url_problem
from slmjax.launch import status
from slmjax.launch.commands import local_train_program, train_args
from slmjax.launch.done import completed
from slmjax.launch.grid import Run, SweepError

_PR_SET_PDEATHSIG = 1
try:  # loaded here, not in the child: between fork and exec only the prctl call itself runs
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc Linux: a killed sweep may then leave its trainer running
    _LIBC = None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def command(run: Run, train_config: str | None = None, program: list[str] | None = None) -> list[str]:
    """The exact argv the local launcher runs for `run` (`program`: the trainer, default slmjax-train)."""
    return (program or local_train_program()) + train_args(run, train_config)


def _log_path(root: str, key: str) -> str:
    return os.path.join(root, "logs", f"{key}.log")


def _open_log(root: str, key: str, argv: list[str]):
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    f = open(_log_path(root, key), "a")
    f.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(argv)}\n")
    f.flush()
    return f


def _lock(root: str) -> fileio.PidLock:
    """One sweep per root: an flock on <root>/.sweep.lock."""
    os.makedirs(root, exist_ok=True)
    try:
        return fileio.PidLock(os.path.join(root, ".sweep.lock"))
    except fileio.LockHeld as e:
        raise SweepError(f"another sweep (pid {e.pid}) is running in {root}; "
                         "stop it or wait for it") from None


def launch(runs: list[Run], root: str, *, dry_run: bool = False, keep_going: bool = False,
           train_config: str | None = None, program: list[str] | None = None,
           stream: bool = False, out: TextIO | None = None) -> int:
    """Run `runs` in order; returns 0 when every run is completed. See the module docstring."""
    out = out or sys.stdout
    if problem := url_problem(root, "--root"):
        raise SweepError(problem)
    if dry_run:
        for r in runs:
            if completed(r):
                print(f"# {r.key}: completed, skipped", file=out)
            else:
                print(shlex.join(command(r, train_config, program)), file=out)
        return 0

    lock = _lock(root)
    stop = {"signal": None}
    child: dict[str, subprocess.Popen | None] = {"proc": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum
        proc = child["proc"]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)   # the trainer checkpoints (or not) and exits

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    failed = []
    try:
        for i, r in enumerate(runs):
            if stop["signal"] is not None:
                break
            if completed(r):
                status.log_event(root, "skip", r.key, reason="completed")
                print(f"[{i + 1}/{len(runs)}] {r.key}: completed, skipped", file=out, flush=True)
                continue
            resumed = os.path.isdir(os.path.join(r.workdir, "checkpoints"))
            argv = command(r, train_config, program)
            print(f"[{i + 1}/{len(runs)}] {r.key}: {'resuming' if resumed else 'starting'}: "
                  f"{shlex.join(argv)}", file=out, flush=True)
            status.log_event(root, "start", r.key, resumed=resumed, pid=os.getpid())
            t0 = time.time()
            log = None if stream else _open_log(root, r.key, argv)
            try:
                child["proc"] = subprocess.Popen(argv, preexec_fn=_die_with_parent, stdout=log,
                                                 stderr=subprocess.STDOUT if log else None)
                if stop["signal"] is not None:   # it came before there was a trainer to forward it to
                    child["proc"].send_signal(signal.SIGTERM)
                rc = child["proc"].wait()
            finally:
                child["proc"] = None
                if log:
                    log.close()
            seconds = round(time.time() - t0, 1)
            if stop["signal"] is not None:
                status.log_event(root, "interrupted", r.key, rc=rc, seconds=seconds)
                break
            if rc == 0 and status.is_completed(r.workdir):
                status.log_event(root, "completed", r.key, seconds=seconds)
                loss = status.final_loss(r.workdir)
                print(f"[{i + 1}/{len(runs)}] {r.key}: completed in {seconds:.0f} s"
                      + (f", test loss {loss:.4f}" if loss is not None else ""), file=out, flush=True)
                continue
            why = f"exit code {rc}" if rc else "exit code 0 but run.json is not 'completed'"
            status.log_event(root, "failed", r.key, rc=rc, seconds=seconds)
            where = "" if stream else f"; log {_log_path(root, r.key)}"
            print(f"[{i + 1}/{len(runs)}] {r.key}: failed ({why}){where}", file=out, flush=True)
            failed.append(r.key)
            if not keep_going:
                break
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        lock.release()
    if stop["signal"] is not None:
        print(f"sweep interrupted by signal {stop['signal']}: launch it again to resume", file=out)
        return 128 + int(stop["signal"])
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=out)
        return 1
    return 0
