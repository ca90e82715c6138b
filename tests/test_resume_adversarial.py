"""Preemption and resume under adversarial timing and damaged workdirs.

A kill between the last checkpoint and run.json's `completed`; SIGTERM during start-up, during
an evaluation, or while the last checkpoint is written; a relaunch while the preempted trainer
is still in the workdir; every checkpoint unrestorable (a systematic cause, not damage); an
iterator state that disagrees with its step; a kill in the middle of an Orbax save (async and
sync); a unit-dataset run stopped and resumed: each resumes exactly or stops with one line.
"""

import json
import os
import shutil
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from run_helpers import (SIGKILL, SIGTERM, launch, outputs_of, run, run_until,
                         sigint_as_from_a_terminal, small_pipeline, train_rows)
from slmjax.train.checkpoint import RunCheckpoints, list_steps, restore_params
from slmjax.train.run_files import RunError, workdir_lock

# Hooks for run_helpers.launch: a SIGTERM to the trainer's own process at a chosen moment:
# "startup" (while the data pipeline is built), "eval" (during a periodic evaluation), "hold" (at
# the restore, which then waits up to 12 s for another trainer in the workdir to pass step 12) or
# "close" (while the checkpoints of the finished run are written); "final_kill" is a SIGKILL
# during the final evaluation; "fail" raises an error while the batch of step 13 is placed;
# "full_disk" fails the (background) write of the last checkpoint as a full disk does.
_HOOK_HEAD = """
import json, os, signal, sys, time
from slmjax.train import loop
from slmjax.train.checkpoint import RunCheckpoints
def term():
  os.kill(os.getpid(), signal.SIGTERM)
"""
_HOOKS = {
    "startup": """
real = loop.build_pipeline
def hooked(*a, **k):
  term()
  return real(*a, **k)
loop.build_pipeline = hooked
""",
    "eval": """
real_eval = loop._Evaluator.__call__
def evaluate(self, params, final=False, **k):
  if not final:
    term()
  return real_eval(self, params, final, **k)
loop._Evaluator.__call__ = evaluate
""",
    "final_term": """
real_eval = loop._Evaluator.__call__
def evaluate(self, params, final=False, **k):
  if final:
    term()
  return real_eval(self, params, final, **k)
loop._Evaluator.__call__ = evaluate
""",
    "hold": """
real_restore = RunCheckpoints.restore_latest
def restore(self, *a, **k):
  term()
  open(os.path.join(sys.argv[2], "hooked"), "w").close()
  metrics, end = os.path.join(sys.argv[2], "metrics.jsonl"), time.time() + 12
  while time.time() < end and not any(
      json.loads(l).get("step", 0) >= 12 for l in open(metrics) if l.strip()):
    time.sleep(0.05)
  return real_restore(self, *a, **k)
RunCheckpoints.restore_latest = restore
""",
    "close": """
real_close = RunCheckpoints.close
def close(self):
  term()
  real_close(self)
RunCheckpoints.close = close
""",
    "final_kill": """
real_eval = loop._Evaluator.__call__
def evaluate(self, params, final=False, **k):
  if final:  # killed once the last checkpoint is on disk, or after 20 s
    step_dir, end = os.path.join(sys.argv[2], "checkpoints", "24"), time.time() + 20
    while time.time() < end and not os.path.isdir(step_dir):
      time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)
  return real_eval(self, params, final, **k)
loop._Evaluator.__call__ = evaluate
""",
    "fail": """
real_batch, batches = loop.make_global_batch, []
def batch(*a, **k):
  batches.append(1)
  if len(batches) == 13:
    raise RuntimeError("input host lost")
  return real_batch(*a, **k)
loop.make_global_batch = batch
""",
    "full_disk": """
import errno
from orbax.checkpoint._src.checkpointers import async_checkpointer
real_wait = async_checkpointer._background_wait_for_commit_futures
def wait(directory, *a, **k):  # the background thread's writes of checkpoint 24 fail
  if directory.name == "24":
    raise OSError(errno.ENOSPC, "No space left on device")
  return real_wait(directory, *a, **k)
async_checkpointer._background_wait_for_commit_futures = wait
""",
}


def _launch_hooked(workdir, where, **overrides):
  p = launch(workdir, hook=_HOOK_HEAD + _HOOKS[where], **overrides)
  out, _ = p.communicate(timeout=600)
  return p.returncode, out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One uninterrupted run shared by the tests of this module."""
  wd = str(tmp_path_factory.mktemp("ref") / "run")
  run(wd)
  return wd


def _run_json(wd):
  with open(os.path.join(wd, "run.json")) as f:
    return json.load(f)


def _strip(rows):
  return [{k: r[k] for k in ("step", "loss", "grad_norm", "lr")} for r in rows]


def _assert_same_params(a_wd, b_wd):
  _, a, _ = restore_params(a_wd)
  _, b, _ = restore_params(b_wd)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _assert_matches_reference(wd, reference):
  rows, evals = train_rows(wd)
  ref_rows, ref_evals = train_rows(reference)
  assert _strip(rows) == _strip(ref_rows)
  assert evals == ref_evals
  _assert_same_params(wd, reference)


def _copy_without(reference, dst, *steps):
  """The reference run as a run killed before it saved `steps` left it: run.json `running`,
  without the final evaluation."""
  shutil.copytree(reference, dst)
  for s in steps:
    shutil.rmtree(os.path.join(dst, "checkpoints", str(s)))
  killed = {k: v for k, v in _run_json(dst).items()
            if k not in ("final_test_loss", "final_test_tokens", "test_loss_by_dataset")}
  with open(os.path.join(dst, "run.json"), "w") as f:
    json.dump({**killed, "status": "running"}, f)


def test_first_ctrl_c_saves_and_exits_preempted(tmp_path):
  """SIGINT (Ctrl-C) once: like a preemption notice, a checkpoint where the run stands, exit 0
  with status `preempted` and a line saying a second Ctrl-C aborts; not `failed`."""
  wd = str(tmp_path / "run")
  code, out = run_until(wd, 3, signal.SIGINT, checkpoint__every_steps=1000)
  assert code == 0, out[-2000:]
  assert _run_json(wd)["status"] == "preempted", out[-2000:]
  assert "Traceback" not in out and "press Ctrl-C again to abort" in out, out[-2000:]
  assert len(list_steps(wd)) == 1 and 3 <= list_steps(wd)[0] < 24


def test_second_ctrl_c_raises_keyboard_interrupt():
  from slmjax.train import preemption
  before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
  assert preemption.install()
  try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)                       # the handler runs at the next bytecode boundary
    assert preemption.requested()
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.01)
  finally:
    preemption.uninstall()
    restored = signal.signal(signal.SIGINT, before)
  assert restored is signal.default_int_handler
  assert not preemption.requested()


def test_kill_after_last_checkpoint_before_run_json_still_records_final_loss(reference, tmp_path):
  """The last checkpoint is on disk but the kill came before run.json said `completed` (the
  final fields are written after the checkpoints close): the relaunch evaluates the restored
  weights and records the same final test loss, instead of `completed` with no loss."""
  wd = str(tmp_path / "run")
  shutil.copytree(reference, wd)
  ref_info = _run_json(reference)
  killed = {k: v for k, v in ref_info.items() if k not in (
      "final_test_loss", "final_test_tokens", "test_loss_by_dataset", "peak_flops",
      "peak_flops_source")}
  killed["status"] = "running"
  with open(os.path.join(wd, "run.json"), "w") as f:
    json.dump(killed, f)
  metrics = open(os.path.join(wd, "metrics.jsonl")).read()
  run(wd)
  info = _run_json(wd)
  assert info["status"] == "completed"
  for k in ("final_test_loss", "final_test_tokens", "test_loss_by_dataset"):
    assert info[k] == ref_info[k], k
  assert open(os.path.join(wd, "metrics.jsonl")).read() == metrics
  assert list_steps(wd) == list_steps(reference)


def test_kill_during_the_final_evaluation_loses_no_training(reference, tmp_path):
  """The last checkpoint is written before the final evaluation (which reads the whole held-out
  split, long for a big run): a kill or crash in it loses no step; the relaunch evaluates the
  restored weights and writes the final row and run.json as an uninterrupted run does."""
  wd = str(tmp_path / "run")
  code, out = _launch_hooked(wd, "final_kill")
  assert code == -9, out[-2000:]
  assert list_steps(wd) == [8, 16, 24]
  run(wd)
  assert _run_json(wd)["resumed_from"] == 24
  _assert_matches_reference(wd, reference)
  for k in ("status", "final_test_loss", "final_test_tokens", "test_loss_by_dataset"):
    assert _run_json(wd)[k] == _run_json(reference)[k], k


def test_sigterm_during_the_final_evaluation_exits_preempted_at_once(reference, tmp_path):
  """The final evaluation reads the whole held-out split (long for a big run): a notice during
  it stops it there (the last checkpoint is on disk) and the launch ends `preempted` rather than
  running into the grace period's SIGKILL; the relaunch evaluates the restored weights."""
  wd = str(tmp_path / "run")
  code, out = _launch_hooked(wd, "final_term")
  assert code == 0, out[-3000:]
  assert _run_json(wd)["status"] == "preempted" and "final_test_loss" not in _run_json(wd)
  assert list_steps(wd) == [8, 16, 24]
  assert not [r for r in train_rows(wd)[1] if r["step"] == 24]  # no row of a part-evaluation
  run(wd)
  assert _run_json(wd)["resumed_from"] == 24
  _assert_matches_reference(wd, reference)
  for k in ("status", "final_test_loss", "final_test_tokens", "test_loss_by_dataset"):
    assert _run_json(wd)[k] == _run_json(reference)[k], k


def test_relaunching_a_completed_run_changes_nothing(reference, tmp_path):
  """A finished run launched again (a sweep relaunched, on another device count, a logging
  field changed) keeps its record: run.json, config.json and metrics.jsonl byte for byte, the
  same checkpoints."""
  wd = str(tmp_path / "run")
  shutil.copytree(reference, wd)
  before = {f: open(os.path.join(wd, f), "rb").read()
            for f in ("run.json", "config.json", "metrics.jsonl")}
  run(wd, devices=4, train__eval_batches=3)
  assert {f: open(os.path.join(wd, f), "rb").read() for f in before} == before
  assert list_steps(wd) == list_steps(reference)


def test_relaunching_a_completed_run_whose_checkpoints_were_deleted_changes_nothing(reference,
                                                                                   tmp_path):
  """The checkpoints of a finished run were deleted to free space, then the run was launched
  again (a requeued job, a script over all runs): its record stays as it is, instead of a
  retraining from step 0 that first empties metrics.jsonl."""
  wd = str(tmp_path / "run")
  shutil.copytree(reference, wd)
  shutil.rmtree(os.path.join(wd, "checkpoints"))
  before = {f: open(os.path.join(wd, f), "rb").read() for f in ("run.json", "metrics.jsonl")}
  run(wd)
  assert {f: open(os.path.join(wd, f), "rb").read() for f in before} == before
  assert list_steps(wd) == []


def test_relaunch_after_a_failed_launch_leaves_no_stale_error(reference, tmp_path):
  """A launch failed (status `failed`, its error recorded); the relaunch completes, and run.json
  reads as the uninterrupted run's: no `error` of the earlier launch beside `completed`."""
  wd = str(tmp_path / "run")
  code, out = _launch_hooked(wd, "fail")
  assert code == 1 and _run_json(wd)["status"] == "failed", out[-2000:]
  assert _run_json(wd)["error"] == "input host lost"
  run(wd)
  _assert_matches_reference(wd, reference)
  launch_only = ("run_id", "resumed_from", "throughput")
  strip = lambda info: {k: v for k, v in info.items() if k not in launch_only}
  assert strip(_run_json(wd)) == strip(_run_json(reference))
  assert _run_json(wd)["resumed_from"] == 8


def test_a_last_checkpoint_that_fails_to_write_leaves_the_run_failed_not_running(reference,
                                                                                   tmp_path):
  """The last checkpoint's background write fails (a full disk): the launch ends with an error
  and run.json says `failed` with that error, not `running` (what a sweep then reads as a live
  trainer); the relaunch resumes from the checkpoint before it and ends as the reference."""
  wd = str(tmp_path / "run")
  code, out = _launch_hooked(wd, "full_disk")
  assert code == 1, out[-2000:]
  info = _run_json(wd)
  assert info["status"] == "failed", info
  assert "No space left on device" in info["error"]
  assert list_steps(wd) == [8, 16]
  run(wd)
  assert _run_json(wd)["resumed_from"] == 16 and _run_json(wd)["status"] == "completed"
  _assert_matches_reference(wd, reference)


def test_sigterm_during_startup_exits_preempted_then_resumes_exactly(reference, tmp_path):
  """A preemption notice while the trainer starts (data, restore, compile) is not a kill: exit
  status 0, run.json `preempted`, nothing trained or saved; the relaunch ends bit-exact."""
  wd = str(tmp_path / "run")
  _copy_without(reference, wd, 16, 24)
  code, out = _launch_hooked(wd, "startup")
  assert code == 0, out[-3000:]
  info = _run_json(wd)
  assert info["status"] == "preempted" and info["resumed_from"] == 8, out[-2000:]
  assert list_steps(wd) == [8]
  assert max(r["step"] for r in train_rows(wd)[0]) == 8
  run(wd)
  _assert_matches_reference(wd, reference)
  assert _run_json(wd)["status"] == "completed"


def test_sigterm_during_an_evaluation_saves_where_the_run_stands(reference, tmp_path):
  """The notice lands while a periodic evaluation runs, at a step with no scheduled
  checkpoint: the run still checkpoints that step before it exits `preempted`."""
  wd = str(tmp_path / "run")
  over = dict(train__eval_every=4, checkpoint__every_steps=1000)
  code, out = _launch_hooked(wd, "eval", **over)
  assert code == 0, out[-3000:]
  assert _run_json(wd)["status"] == "preempted"
  assert list_steps(wd) == [4], out[-2000:]
  assert train_rows(wd)[1] == []  # the evaluation was abandoned, not reported on part of the data
  run(wd, **over)
  rows, evals = train_rows(wd)
  assert _strip(rows) == _strip(train_rows(reference)[0])
  _assert_same_params(wd, reference)
  # the relaunch made the cut evaluation from step 4's checkpoint; the others equal the reference's
  assert [r["step"] for r in evals] == [4, 8, 12, 16, 20, 24]
  ref_evals = {r["step"]: r for r in train_rows(reference)[1]}
  assert [r for r in evals if r["step"] in ref_evals] == list(ref_evals.values())


def test_relaunch_waits_for_a_preempted_trainer_still_in_the_workdir(reference, tmp_path):
  """A trainer got its notice while restoring and is slow to exit (a big checkpoint); the run
  is launched again meanwhile (a sweep relaunched at once, a requeued job). The new trainer
  waits for the old one instead of racing it: without that, the old one's resume rewrote
  metrics.jsonl under the new one, whose later rows were lost."""
  wd = str(tmp_path / "run")
  _copy_without(reference, wd, 16, 24)
  path = os.path.join(wd, "metrics.jsonl")
  rows = [l for l in open(path) if json.loads(l)["step"] <= 8]
  with open(path, "w") as f:
    f.writelines(rows)                                  # as left by a run preempted at step 8
  old = launch(wd, hook=_HOOK_HEAD + _HOOKS["hold"])
  end = time.time() + 120
  while not os.path.exists(os.path.join(wd, "hooked")) and time.time() < end:
    time.sleep(0.05)
  out = run(wd)                                        # the relaunch
  old_out, _ = old.communicate(timeout=120)
  assert old.returncode == 0, old_out[-3000:]
  _assert_matches_reference(wd, reference)
  assert _run_json(wd)["status"] == "completed"
  assert "waiting for the trainer" in out, out[-2000:]


def test_workdir_lock_held_too_long_is_one_line(tmp_path):
  held = workdir_lock(str(tmp_path))
  try:
    with pytest.raises(RunError) as e:
      workdir_lock(str(tmp_path), wait_s=0.3)
  finally:
    held.release()
  assert str(e.value) == (f"another trainer (pid {os.getpid()}) is running in {tmp_path}; stop "
                          "it or wait for it to exit")
  workdir_lock(str(tmp_path), wait_s=0).release()     # free again once released


def test_a_lock_wait_that_is_not_a_number_is_one_line(tmp_path, monkeypatch):
  monkeypatch.setenv("SLMJAX_WORKDIR_LOCK_WAIT", "ten")
  with pytest.raises(RunError, match=r"^\$SLMJAX_WORKDIR_LOCK_WAIT='ten' is not a number of "
                                     r"seconds$"):
    workdir_lock(str(tmp_path))


def test_sigterm_while_last_checkpoint_is_written_completes(reference, tmp_path):
  """SIGTERM while the finished run waits for its (async) last checkpoint: the checkpoint is
  written and the run ends `completed` with status 0, not killed half-way."""
  wd = str(tmp_path / "run")
  _copy_without(reference, wd, 24)
  code, out = _launch_hooked(wd, "close")
  assert code == 0, out[-3000:]
  info = _run_json(wd)
  assert info["status"] == "completed" and info["final_test_loss"] is not None
  assert list_steps(wd) == [8, 16, 24]
  _assert_matches_reference(wd, reference)


def _save_steps(wd, steps):
  ck = RunCheckpoints(wd, ml_collections.ConfigDict(dict(keep=5)))
  it = small_pipeline().train_iter()
  for s in range(1, max(steps) + 1):
    next(it)
    if s in steps:
      ck.save(s, {"w": jnp.arange(6.0) + s}, it)
  ck.close()


def test_no_restorable_checkpoint_is_refused_and_nothing_moved(tmp_path):
  """Every checkpoint failing alike means a systematic cause (changed program, memory, file
  system), not damage: one-line RunError and nothing moved, never a silent restart from step 0
  with all checkpoints put aside."""
  wd = str(tmp_path)
  _save_steps(wd, (1, 2, 3))
  ck = RunCheckpoints(wd, ml_collections.ConfigDict(dict(keep=5)))
  with pytest.raises(RunError) as e:
    ck.restore_latest({"w": jax.ShapeDtypeStruct((7,), jnp.float32)}, small_pipeline().train_iter())
  ck.close()
  msg = str(e.value)
  assert "\n" not in msg and "no checkpoint" in msg and "nothing was moved" in msg, msg
  assert "steps 1, 2, 3" in msg
  assert list_steps(wd) == [1, 2, 3]
  assert not os.path.exists(os.path.join(wd, "corrupt_checkpoints"))


def test_unrestorable_newest_is_moved_aside_when_an_older_one_restores(tmp_path):
  wd = str(tmp_path)
  _save_steps(wd, (1, 2, 3))
  os.makedirs(os.path.join(wd, "checkpoints", "5"))           # an empty step folder
  ck = RunCheckpoints(wd, ml_collections.ConfigDict(dict(keep=5)))
  step, state = ck.restore_latest({"w": jax.ShapeDtypeStruct((6,), jnp.float32)},
                                  small_pipeline().train_iter())
  ck.close()
  assert step == 3 and np.asarray(state["w"]).tolist() == list(np.arange(6.0) + 3)
  assert [d.split("-")[0] for d in os.listdir(os.path.join(wd, "corrupt_checkpoints"))] == ["5"]
  assert list_steps(wd) == [1, 2, 3]


def test_step_folders_orbax_never_committed_are_not_checkpoints(reference, tmp_path, caplog):
  """An empty or hand-made step folder, or Orbax's temporary folder of a save cut short, is not
  a checkpoint for list_steps / restore_params (slmjax-eval, tools/checkpoint.py), and the
  read-only restore logs none of Orbax's read-only notices."""
  wd = str(tmp_path / "run")
  shutil.copytree(reference, wd)
  ckpts = os.path.join(wd, "checkpoints")
  os.makedirs(os.path.join(ckpts, "30"))                              # empty
  os.makedirs(os.path.join(ckpts, "31", "state"))                     # hand-made
  with open(os.path.join(ckpts, "31", "state", "notes.txt"), "w") as f:
    f.write("x")
  shutil.copytree(os.path.join(ckpts, "24"), os.path.join(ckpts, "32.orbax-checkpoint-tmp-7"))
  os.remove(os.path.join(ckpts, "32.orbax-checkpoint-tmp-7", "commit_success.txt"))
  caplog.set_level("WARNING")
  assert list_steps(wd) == [8, 16, 24]
  _, params, step = restore_params(wd)
  assert step == 24
  with pytest.raises(RunError, match="no checkpoint at step 30"):
    restore_params(wd, 30)
  notices = [r.getMessage() for r in caplog.records
             if "read only" in r.getMessage() or "read_only" in r.getMessage()]
  assert notices == []
  _, ref, _ = restore_params(reference)
  for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(ref)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_only_uncommitted_step_folders_are_moved_aside_and_the_run_starts_over(tmp_path):
  """The trainer agrees with list_steps: a step folder Orbax never committed is not restored
  (nor counted as a failed restore that blocks the run); it is moved aside with a warning."""
  wd = str(tmp_path)
  os.makedirs(os.path.join(wd, "checkpoints", "5"))
  ck = RunCheckpoints(wd, ml_collections.ConfigDict(dict(keep=5)))
  assert ck.restore_latest({"w": jax.ShapeDtypeStruct((6,), jnp.float32)},
                           small_pipeline().train_iter()) is None
  ck.close()
  assert [d.split("-")[0] for d in os.listdir(os.path.join(wd, "corrupt_checkpoints"))] == ["5"]
  assert list_steps(wd) == []


def test_iterator_state_off_its_step_is_derived_from_the_step(tmp_path):
  """Batch t is a pure function of (seed, t): a saved iterator position that disagrees with the
  checkpoint's step is not trusted (a warning), the step is."""
  wd = str(tmp_path)
  _save_steps(wd, (3,))
  data = os.path.join(wd, "checkpoints", "3", "data")
  (name,) = [f for f in os.listdir(data) if f.startswith("process_")]
  with open(os.path.join(data, name), "w") as f:
    json.dump({"next_index": 1}, f)
  it = small_pipeline().train_iter()
  ck = RunCheckpoints(wd, ml_collections.ConfigDict(dict(keep=5)))
  step, _ = ck.restore_latest({"w": jax.ShapeDtypeStruct((6,), jnp.float32)}, it)
  ck.close()
  assert step == 3
  np.testing.assert_array_equal(next(it)["inputs"], small_pipeline().train[3]["inputs"])


@pytest.mark.slow
@pytest.mark.parametrize("async_save", [True, False])
def test_sigkill_in_the_middle_of_a_save_resumes_exactly(reference, tmp_path, async_save):
  """Killed while Orbax writes a checkpoint (its temporary folder exists): the relaunch ignores
  the partial save, resumes from the last complete checkpoint and ends bit-exact."""
  wd = str(tmp_path / "run")
  ck = os.path.join(wd, "checkpoints")
  over = dict(checkpoint__every_steps=2, checkpoint__async_save=async_save)
  for nth in (3, 6):
    p = launch(wd, **over)
    seen = set()
    while p.poll() is None:
      tmp = [e for e in (os.listdir(ck) if os.path.isdir(ck) else []) if "tmp" in e]
      seen.update(tmp)
      if len(seen) >= nth:
        p.kill()
        break
      time.sleep(0.0005)
    p.communicate()
    assert p.returncode == -9
    assert all(s < 24 for s in list_steps(wd))
  run(wd, **over)
  _assert_matches_reference(wd, reference)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["windows", "packed"])
def test_unit_dataset_mixture_resumes_exactly(tmp_path, monkeypatch, mode):
  """data.kind=units, a weighted two-dataset mixture over more than one epoch: SIGTERM then
  SIGKILL then relaunch gives the same batches (losses, evaluations) as an uninterrupted run."""
  from slmjax.data.testing import random_utterances, write_unit_dataset
  monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
  rng = np.random.default_rng(0)
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  write_unit_dataset(a, {"train": random_utterances(200, 34, rng),
                         "test": random_utterances(30, 34, rng)}, vocab_size=34)
  write_unit_dataset(b, {"train": random_utterances(100, 34, rng, mean_len=10),
                         "test": random_utterances(20, 34, rng, mean_len=10)},
                     vocab_size=34, synthetic=True)
  over = dict(data__kind="units", data__path=f"{a},{b}", data__weights="3,1", data__mode=mode,
              train__steps=40, checkpoint__every_steps=5, train__eval_every=10)
  ref = str(tmp_path / "ref")
  run(ref, **over)
  assert _run_json(ref)["epochs"] > 1
  wd = str(tmp_path / "run")
  code, out = run_until(wd, 7, SIGTERM, **over)
  assert code == 0 and _run_json(wd)["status"] == "preempted", out[-2000:]
  code, _ = run_until(wd, 23, SIGKILL, **over)
  assert code == -9
  run(wd, **over)
  rows, evals = train_rows(wd)
  ref_rows, ref_evals = train_rows(ref)
  assert _strip(rows) == _strip(ref_rows) and evals == ref_evals


@pytest.mark.slow   # two trainers start, join and compile: ~40 s on a shared 2-core machine
@pytest.mark.parametrize("sig", [SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl_c"])
def test_a_notice_to_one_of_two_processes_saves_on_both_and_exits_preempted(tmp_path, sig):
  """Multi-host: the notice reaches one process only (each host gets its own SIGTERM, at its own
  moment). Every process stops after the same step, all write that checkpoint together, and each
  exits 0 with the run `preempted`. Before, JAX's preemption service took SIGTERM from the
  trainer, which trained on to the end; a Ctrl-C stopped one process alone."""
  import subprocess
  import sys
  from test_launch_distributed import REPO, _free_port, _worker_env
  wd = str(tmp_path / "run")
  args = ["--config=configs/train.py:tiny", "--config.model.vocab_size=102",
          "--config.train.steps=400", "--config.train.log_every=1",
          "--config.train.eval_every=1000",
          "--config.checkpoint.every_steps=1000", "--config.train.progress=False",
          f"--workdir={wd}"]
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, "-m", "slmjax.train.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=sigint_as_from_a_terminal, env=_worker_env(4, JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                                            JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
           for i in range(2)]
  metrics, end = os.path.join(wd, "metrics.jsonl"), time.time() + 400
  while time.time() < end and all(p.poll() is None for p in procs):
    if os.path.exists(metrics) and any(json.loads(l).get("step", 0) >= 3
                                       for l in open(metrics) if l.strip()):
      procs[1].send_signal(sig)
      break
    time.sleep(0.05)
  outs = outputs_of(procs, 150, "a process did not exit after the notice")
  assert [p.returncode for p in procs] == [0, 0], outs[1][-2000:] + outs[0][-2000:]
  assert _run_json(wd)["status"] == "preempted"
  (step,) = list_steps(wd)
  assert 3 <= step < 400
  assert max(r["step"] for r in train_rows(wd)[0]) == step
  _, params, restored = restore_params(wd)
  assert restored == step and all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
