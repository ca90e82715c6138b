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
from slmjax.train.run_files import LOCK_WAIT_ENV, claim_workdir, workdir_lock, write_json
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

