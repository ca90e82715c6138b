"""What one launch of the trainer leaves behind: a notice while it waits for the workdir lock,
run.json's `throughput` of a launch that timed no steps, and the one step every process of a
multi-process launch resumes from."""

import os
import signal
import threading
import time

import pytest

from slmjax import fileio


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
