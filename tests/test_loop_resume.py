"""Preemption and restarts: a `tiny` synthetic run stopped by SIGTERM, then killed by SIGKILL, then
relaunched, ends bit-for-bit as an uninterrupted run (per-step losses and final parameters); a
checkpoint written on 8 devices restores onto 4; 8 devices and 1 device give the same curve."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from run_helpers import SIGKILL, SIGTERM, TINY, run, run_until, train_rows
from slmjax.train.checkpoint import list_steps, restore_params
from slmjax.train.run_files import RunError


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One uninterrupted run shared by the tests of this module."""
  wd = str(tmp_path_factory.mktemp("ref") / "run")
  run(wd)
  return wd


def _params(wd, step=None):
  _, params, s = restore_params(wd, step)
  return s, jax.tree.map(np.asarray, params)


def _assert_same_params(a, b, exact=True):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    if exact:
      np.testing.assert_array_equal(x, y)
    else:
      np.testing.assert_allclose(x, y, rtol=2e-3, atol=2e-4)


def test_reference_run_writes_every_figure(reference):
  rows, evals = train_rows(reference)
  assert [r["step"] for r in rows] == list(range(1, TINY["train.steps"] + 1))
  for key in ("loss", "lr", "grad_norm", "tokens_seen", "tokens_per_sec", "step_time", "mfu",
              "mfu_palm"):
    assert all(r[key] is not None for r in rows), key
  assert rows[-1]["tokens_seen"] == 24 * 8 * 32
  assert [r["step"] for r in evals] == [8, 16, 24]
  info = json.load(open(os.path.join(reference, "run.json")))
  assert info["status"] == "completed" and info["final_test_loss"] == evals[-1]["test_loss"]
  assert info["n_params"] > info["n_params_nonemb"] > 0
  assert info["tokens"] == 24 * 8 * 32 and info["unique_tokens"] >= 60000
  assert abs(info["epochs"] - info["tokens"] / info["unique_tokens"]) < 1e-9
  assert os.path.isdir(os.path.join(reference, "tensorboard"))
  assert json.load(open(os.path.join(reference, "config.json")))["train"]["steps"] == 24
  assert list_steps(reference) == [8, 16, 24]
  # run.json's typical speed: the median of the logged step times after the first (compilation),
  # and the MFU of that speed against the configured peak (TINY: 1e11 FLOP/s, counted once).
  th = info["throughput"]
  assert th["steps_timed"] == 23
  assert th["step_time"] == pytest.approx(float(np.median([r["step_time"] for r in rows[1:]])))
  assert th["tokens_per_sec"] == pytest.approx(8 * 32 / th["step_time"])
  assert th["mfu"] == pytest.approx(th["tokens_per_sec"] * info["flops_per_token"]["6n_attn"] / 1e11)
  assert th["mfu_palm"] == pytest.approx(
      th["tokens_per_sec"] * info["flops_per_token"]["6n_attn_full"] / 1e11)


def test_tiny_run_learns_the_synthetic_structure(reference):
  """Test loss ends far below the unigram entropy of the n-gram stream (a context-free model's
  best) and not below its entropy rate (the best any model can do)."""
  info = json.load(open(os.path.join(reference, "run.json")))
  ds = info["data"]["datasets"][0]
  assert ds["unigram_entropy"] - ds["entropy_rate"] > 1.0
  assert info["final_test_loss"] < ds["unigram_entropy"] - 0.75
  assert info["final_test_loss"] > ds["entropy_rate"] - 0.1


def test_sigterm_then_sigkill_then_relaunch_is_bit_exact(reference, tmp_path):
  wd = str(tmp_path / "run")
  # Preempted: saves where it stands. No scheduled checkpoint in this launch (checkpoint.* may
  # differ between launches), so the one checkpoint is the preemption's, whichever step the
  # signal lands on (steps take milliseconds: several pass between the poll and the handler).
  code, out = run_until(wd, 3, SIGTERM, checkpoint__every_steps=1000)
  assert code == 0, out[-2000:]
  assert json.load(open(os.path.join(wd, "run.json")))["status"] == "preempted", out[-2000:]
  assert len(list_steps(wd)) == 1 and 3 <= list_steps(wd)[0] < 24
  code, out = run_until(wd, 18, SIGKILL)               # killed: nothing saved at the kill
  assert code == -9 and json.load(open(os.path.join(wd, "run.json")))["status"] == "running"
  assert list_steps(wd)[-1] < 24
  run(wd)                                             # relaunch: resumes, finishes
  ref_rows, ref_evals = train_rows(reference)
  rows, evals = train_rows(wd)
  strip = lambda rs: [{k: r[k] for k in ("step", "loss", "grad_norm", "lr")} for r in rs]
  assert strip(rows) == strip(ref_rows)               # exact float equality, every step
  assert evals == ref_evals
  assert json.load(open(os.path.join(wd, "run.json")))["status"] == "completed"
  _assert_same_params(_params(wd)[1], _params(reference)[1])


def test_checkpoint_from_8_devices_resumes_on_4(reference, tmp_path):
  wd = str(tmp_path / "run")
  shutil.copytree(reference, wd)
  shutil.rmtree(os.path.join(wd, "checkpoints", "24"))
  json.dump({}, open(os.path.join(wd, "run.json"), "w"))  # as a run killed after step 16 left it
  run(wd, devices=4, mesh__fsdp=-1)
  run_json = json.load(open(os.path.join(wd, "run.json")))
  assert run_json["resumed_from"] == 16 and run_json["devices"] == 4
  ref_rows, _ = train_rows(reference)
  rows, _ = train_rows(wd)
  np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref_rows],
                             rtol=1e-4)
  _assert_same_params(_params(wd)[1], _params(reference)[1], exact=False)


def test_one_device_gives_the_same_curve_as_eight(reference, tmp_path):
  wd = str(tmp_path / "run")
  run(wd, devices=1)
  ref_rows, ref_evals = train_rows(reference)
  rows, evals = train_rows(wd)
  np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref_rows],
                             rtol=1e-4)
  np.testing.assert_allclose([r["test_loss"] for r in evals],
                             [r["test_loss"] for r in ref_evals], rtol=1e-4)


def test_corrupt_latest_checkpoint_falls_back_to_previous(reference, tmp_path):
  wd = str(tmp_path / "run")
  shutil.copytree(reference, wd)
  # Damage the newest checkpoint's array data: the run must notice, keep it aside, resume
  # from step 16 and finish exactly as before.
  state = os.path.join(wd, "checkpoints", "24", "state")
  for root, _, files in os.walk(state):
    for f in files:
      if "ocdbt" in root or f.startswith(("d", "manifest")):
        with open(os.path.join(root, f), "r+b") as fh:
          fh.truncate(max(0, os.path.getsize(os.path.join(root, f)) // 3))
  json.dump({}, open(os.path.join(wd, "run.json"), "w"))
  out = run(wd)
  assert "checkpoint" in out and "unreadable" in out, out[-2000:]
  assert os.listdir(os.path.join(wd, "corrupt_checkpoints"))
  assert json.load(open(os.path.join(wd, "run.json")))["resumed_from"] == 16
  _assert_same_params(_params(wd)[1], _params(reference)[1])
  strip = lambda rs: [{k: v for k, v in r.items() if k not in ("tokens_per_sec", "step_time",
                                                              "mfu", "mfu_palm")} for r in rs]
  assert strip(train_rows(wd)[0]) == strip(train_rows(reference)[0])
  assert train_rows(wd)[1] == train_rows(reference)[1]


def _tensorboard_scalars(workdir, tag):
  """[(step, value)] of a scalar as TensorBoard shows it: the events of all files in order (two
  at one step are two points), where a session START at step S drops the earlier points of steps
  >= S (the purge of a resumed writer)."""
  import glob
  import struct
  from tensorboardX.proto.event_pb2 import Event, SessionLog
  shown = []
  for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))):
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
      (n,) = struct.unpack("<Q", data[pos:pos + 8])
      event = Event.FromString(data[pos + 12:pos + 12 + n])
      pos += 12 + n + 4
      if event.HasField("session_log") and event.session_log.status == SessionLog.START:
        shown = [(s, v) for s, v in shown if s < event.step]
      for value in event.summary.value:
        if value.tag == tag:
          shown.append((event.step, value.simple_value))
  return shown


def test_tensorboard_after_a_kill_before_the_first_checkpoint_shows_each_step_once(tmp_path):
  """Killed before any checkpoint, the relaunch trains from step 0: TensorBoard's curve is the
  relaunch's alone, one point per step as in metrics.jsonl, not the killed launch's beside it.
  The killed launch's events are all in its file, as its metrics.jsonl rows are (tensorboardX's
  writer thread held up to 2 minutes of them in memory, lost at the kill)."""
  wd = str(tmp_path / "run")
  code, _ = run_until(wd, 12, SIGKILL, checkpoint__every_steps=1000)
  assert code == -9 and list_steps(wd) == []
  killed, _ = train_rows(wd)
  assert len(killed) >= 12
  shown = _tensorboard_scalars(wd, "loss")   # the event of a row the kill cut may be there too
  assert shown[:len(killed)] == [(r["step"], np.float32(r["loss"])) for r in killed]
  assert len(shown) - len(killed) <= 1
  run(wd, checkpoint__every_steps=1000)
  rows, _ = train_rows(wd)
  assert [r["step"] for r in rows] == list(range(1, 25))
  assert _tensorboard_scalars(wd, "loss") == [(r["step"], np.float32(r["loss"])) for r in rows]


def _flip_a_byte_of_checkpoint(wd, step):
  """Changes one byte in every 4 KiB of each array-data file of checkpoint `step`. Which file
  holds which array (params, mu, nu) depends on the writers' timing: one byte in the middle of
  each file sometimes changed only optimizer state, which restore_params does not read."""
  data = os.path.join(wd, "checkpoints", str(step), "state", "ocdbt.process_0", "d")
  for name in os.listdir(data):
    with open(os.path.join(data, name), "r+b") as f:
      content = bytearray(f.read())
      for i in range(2048, len(content), 4096):
        content[i] ^= 0x10
      f.seek(0)
      f.write(content)


def test_bit_flipped_latest_checkpoint_falls_back_to_previous(reference, tmp_path):
  """Bytes of the newest checkpoint's array data changed on disk (they still decode, to other
  numbers): the run notices, moves it aside and resumes from step 16, ending as the reference
  did, instead of resuming from the damaged weights."""
  wd = str(tmp_path / "run")
  shutil.copytree(reference, wd)
  _flip_a_byte_of_checkpoint(wd, 24)
  json.dump({}, open(os.path.join(wd, "run.json"), "w"))
  out = run(wd)
  assert "unreadable" in out, out[-2000:]
  assert json.load(open(os.path.join(wd, "run.json")))["resumed_from"] == 16
  _assert_same_params(_params(wd)[1], _params(reference)[1])
  assert train_rows(wd)[1] == train_rows(reference)[1]


def test_restore_params_refuses_a_bit_flipped_checkpoint(reference, tmp_path):
  """slmjax-eval and tools/checkpoint.py read weights with restore_params: damaged weights are
  one line naming the checkpoint, not silently other numbers; an undamaged step still reads."""
  wd = str(tmp_path / "run")
  shutil.copytree(reference, wd)
  _flip_a_byte_of_checkpoint(wd, 24)
  with pytest.raises(RunError, match="checkpoint 24 of run .* is damaged"):
    restore_params(wd)
  _assert_same_params(_params(wd, 16)[1], _params(reference, 16)[1])


def test_restore_params_refuses_a_truncated_checkpoint(reference, tmp_path):
  """Array files cut short (a copy that stopped): one line naming the checkpoint, not the
  checkpoint library's traceback."""
  wd = str(tmp_path / "run")
  shutil.copytree(reference, wd)
  data = os.path.join(wd, "checkpoints", "24", "state", "ocdbt.process_0", "d")
  for name in os.listdir(data):
    os.truncate(os.path.join(data, name), os.path.getsize(os.path.join(data, name)) // 3)
  with pytest.raises(RunError, match="checkpoint 24 of run .* is damaged: it cannot be read"):
    restore_params(wd)
