"""What one launch of the trainer leaves behind: a notice while it waits for the workdir lock,
run.json's `throughput` of a launch that timed no steps, and the one step every process of a
multi-process launch resumes from."""

import os
import signal
import threading
import time

import pytest

from slmjax import fileio
from slmjax.train import loop, preemption
from slmjax.train.run_files import (LOCK_WAIT_ENV, claim_workdir, read_json, workdir_lock,
                                    write_json)
from test_loop_inputs import _config


def test_pid_lock_wait_ends_when_stop_turns_true(tmp_path):
  path = str(tmp_path / "lock")
  held = fileio.PidLock(path)
  asked = []

  def stop():
    asked.append(1)
    return len(asked) >= 3

  try:
    t0 = time.monotonic()
    with pytest.raises(fileio.LockWaitStopped) as e:
      fileio.PidLock(path, wait_s=30, stop=stop)
  finally:
    held.release()
  assert e.value.pid == str(os.getpid()) and time.monotonic() - t0 < 5
  fileio.PidLock(path, stop=lambda: True).release()   # a free lock is taken whatever stop says


def _read_all(wd):
  return {f: open(os.path.join(wd, f), "rb").read() for f in sorted(os.listdir(wd))
          if os.path.isfile(os.path.join(wd, f))}


def test_a_notice_while_waiting_for_the_workdir_lock_stops_the_launch(tmp_path, monkeypatch,
                                                                       capsys):
  """SIGTERM while another trainer holds the workdir: no waiting out the lock and training
  after; the launch ends `preempted` at once and leaves the other trainer's files alone."""
  monkeypatch.setenv(LOCK_WAIT_ENV, "20")
  wd, config = str(tmp_path / "run"), _config()
  claim_workdir(wd, config)                 # a relaunch: the other trainer's run
  held = workdir_lock(wd)
  write_json(os.path.join(wd, "run.json"), {"status": "preempted", "resumed_from": 4})
  before = _read_all(wd)
  preemption.install()
  notice = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
  try:
    notice.start()
    t0 = time.monotonic()
    out = loop.train(config, wd)
  finally:
    notice.cancel()
    preemption.uninstall()
    held.release()
  assert out["status"] == "preempted" and time.monotonic() - t0 < 5
  assert "stopped before training, nothing changed" in capsys.readouterr().err
  assert _read_all(wd) == before


def test_a_launch_that_times_no_step_leaves_no_throughput_in_run_json(tmp_path, monkeypatch):
  """run.json's `throughput` is the speed of the launch that wrote it: a relaunch preempted
  before its first step (or one that resumes at the final step) measured none, so it does not
  keep the previous launch's figures beside its own status."""
  # The launch stops before its first step: its initial state is never computed on, and its
  # shapes alone spare the test the compilation of the initialisation.
  monkeypatch.setattr(loop, "init_train_state",
                      lambda config, mesh, key: loop.abstract_train_state(config, mesh))
  wd, config = str(tmp_path / "run"), _config()
  claim_workdir(wd, config)
  write_json(os.path.join(wd, "run.json"), {"status": "preempted", "throughput": {
      "steps_timed": 3, "step_time": 0.5, "tokens_per_sec": 512.0, "mfu": 0.1, "mfu_palm": 0.1}})
  preemption.install()
  try:
    os.kill(os.getpid(), signal.SIGTERM)   # the notice came during start-up
    out = loop.train(config, wd)
  finally:
    preemption.uninstall()
  assert out["status"] == "preempted"
  assert "throughput" not in out and "throughput" not in read_json(os.path.join(wd, "run.json"))

