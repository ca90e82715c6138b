"""What one launch of the trainer leaves behind: a notice while it waits for the workdir lock,
run.json's `throughput` of a launch that timed no steps, and the one step every process of a
multi-process launch resumes from."""

import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from run_helpers import outputs_of, small_pipeline
from slmjax import fileio
from slmjax.train import checkpoint, loop, preemption
from slmjax.train.run_files import (LOCK_WAIT_ENV, RunError, claim_workdir, read_json,
                                    workdir_lock, write_json)
from test_loop_inputs import _config
from test_resume_adversarial import _save_steps


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


def test_a_relaunch_waiting_for_the_workdir_lock_leaves_config_json_alone(tmp_path, monkeypatch):
  """A relaunch may change free fields (checkpoint.*): it writes config.json once it holds the
  workdir, not while another trainer still runs there; another run's config is refused at once."""
  monkeypatch.setenv(LOCK_WAIT_ENV, "0.3")
  wd, config = str(tmp_path / "run"), _config()
  claim_workdir(wd, config)
  relaunch = _config()
  relaunch.checkpoint.every_steps = config.checkpoint.every_steps + 1
  held = workdir_lock(wd)
  before = _read_all(wd)
  try:
    with pytest.raises(loop.RunError, match="another trainer"):
      loop.train(relaunch, wd)
    assert _read_all(wd) == before
    other = _config()
    other.seed = config.seed + 1
    monkeypatch.setenv(LOCK_WAIT_ENV, "60")
    t0 = time.monotonic()
    with pytest.raises(loop.RunError, match="holds a run with another config"):
      loop.train(other, wd)
    assert time.monotonic() - t0 < 10
  finally:
    held.release()


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


def test_a_checkpoint_another_process_cannot_restore_is_passed_over_here_too(tmp_path,
                                                                            monkeypatch, capsys):
  """Multi-process: every process resumes from the same step. The newest checkpoint restores
  here but not on another process (a read error on its host): this process falls back with it,
  and the checkpoint is moved aside as a damaged one, naming the other process."""
  wd = str(tmp_path)
  _save_steps(wd, (1, 2, 3))
  asked = []

  def all_processes(ok):  # the other process: its restore of the first step tried failed
    asked.append(ok)
    return ok and len(asked) > 1

  monkeypatch.setattr(checkpoint, "all_processes", all_processes)
  ck = checkpoint.RunCheckpoints(wd, ml_collections.ConfigDict(dict(keep=5)))
  step, state = ck.restore_latest({"w": jax.ShapeDtypeStruct((6,), jnp.float32)},
                                  small_pipeline().train_iter())
  ck.close()
  assert step == 2 and np.asarray(state["w"]).tolist() == list(np.arange(6.0) + 2)
  assert asked[0] is True                          # step 3 restored here
  assert [d.split("-")[0] for d in os.listdir(os.path.join(wd, "corrupt_checkpoints"))] == ["3"]
  assert "it did not restore on another process" in capsys.readouterr().err


# Process 1 of the relaunch cannot read the train state of checkpoint 20 (a read error on its host).
_UNREADABLE_20 = """
import os
import orbax.checkpoint as ocp
real_restore = ocp.StandardCheckpointHandler.restore
def restore(self, directory, *a, **k):
  if str(directory).endswith(os.path.join("20", "state")):
    raise OSError("injected read error")
  return real_restore(self, directory, *a, **k)
ocp.StandardCheckpointHandler.restore = restore
"""


@pytest.mark.slow   # a trainer, then two that join and compile: ~1-2 min on a shared 2-core machine
def test_processes_resume_from_one_step_when_one_cannot_read_the_newest(tmp_path):
  """Multi-host restore: process 1 cannot read checkpoint 20, process 0 can. Both resume from
  10 (20 is moved aside) and end as the run did, instead of process 0 evaluating step 20 while
  process 1 trains from 10 (a deadlock, or arrays summed across two different steps)."""
  import json
  import subprocess
  import sys
  from test_launch_distributed import REPO, TRAIN, _free_port, _losses, _worker_env
  wd = str(tmp_path / "run")
  args = ["--config=configs/train.py:tiny", "--config.model.vocab_size=102",
          "--config.train.steps=20", "--config.train.log_every=1", "--config.train.eval_every=10",
          "--config.checkpoint.every_steps=10", "--config.train.progress=False", f"--workdir={wd}"]
  first = subprocess.run([sys.executable, "-c", TRAIN, *args], cwd=REPO, capture_output=True,
                         text=True, env=_worker_env(8), timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]
  losses, _ = _losses(wd)
  path = os.path.join(wd, "run.json")
  info = read_json(path)
  del info["final_test_loss"]                 # as if killed before it recorded the final loss
  write_json(path, {**info, "status": "running"})
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, "-c", (_UNREADABLE_20 if i else "") + TRAIN, *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_worker_env(4, JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                                            JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
           for i in range(2)]
  outs = outputs_of(procs, 300, "the processes did not finish (a deadlock)")
  assert [p.returncode for p in procs] == [0, 0], outs[1][-2000:] + outs[0][-2000:]
  info = read_json(path)
  assert info["status"] == "completed" and info["resumed_from"] == 10, json.dumps(info)[:1000]
  assert "injected read error" in outs[1]
  assert [d.split("-")[0] for d in os.listdir(os.path.join(wd, "corrupt_checkpoints"))] == ["20"]
  assert checkpoint.list_steps(wd) == [10, 20]
  again, _ = _losses(wd)
  np.testing.assert_allclose([again[s] for s in range(11, 21)], [losses[s] for s in range(11, 21)],
                             rtol=1e-5)


@pytest.mark.parametrize("process", [0, 1])
def test_a_failed_move_aside_stops_every_process_alike(tmp_path, monkeypatch, process):
  """Multi-process: process 0 cannot move a damaged checkpoint aside (corrupt_checkpoints is a
  file). Every process makes the same host-level collectives and stops with one line, instead of
  process 0 raising while the others wait for it in a barrier."""
  wd = str(tmp_path)
  _save_steps(wd, (1, 2))
  write_json(os.path.join(wd, "corrupt_checkpoints"), {})
  ck = checkpoint.RunCheckpoints(wd, ml_collections.ConfigDict(dict(keep=5)))
  collectives = []

  def min_over_processes(value):  # process 0 failed to move: the smallest value is 0
    collectives.append(value)
    return 0

  monkeypatch.setattr(checkpoint, "min_over_processes", min_over_processes)
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(jax, "process_index", lambda: process)
  monkeypatch.setattr("jax.experimental.multihost_utils.sync_global_devices",
                      lambda name: collectives.append(name))
  monkeypatch.setattr(ck.mngr, "reload", lambda: None)
  with pytest.raises(RunError, match="corrupt_checkpoints") as e:
    ck._quarantine([(2, "bit sums differ")])  # pylint: disable=protected-access
  monkeypatch.undo()
  ck.close()
  assert len(collectives) == 1 and "\n" not in str(e.value)
  assert checkpoint.list_steps(wd) == [1, 2]
