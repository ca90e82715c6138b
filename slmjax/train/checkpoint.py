"""Orbax checkpoints of a run: train state and Grain data-iterator state, saved together.

`checkpoints/<step>/` holds three items: `state` (the sharded train state: step, params,
opt_state), `data` (the Grain iterator state, one JSON per process) and `fingerprint` (per array,
the sum of its raw bits, which restores check: a damaged file can decode to other numbers without
an error). Public, for other stages: `list_steps(workdir)` and
`restore_params(workdir, step=None) -> (model_cfg, params, step)`.
Only finished checkpoints count: a step folder Orbax committed (`commit_success.txt`, or a commit
time in `_CHECKPOINT_METADATA`), not an empty, hand-made or half-copied one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from slmjax.errortext import first_line
from slmjax.train.run_files import RunError, read_json

log = logging.getLogger(__name__)


def _warn(msg: str) -> None:
  log.warning(msg)
  print(f"WARNING: {msg}", file=sys.stderr, flush=True)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def _is_finished(step_dir: str) -> bool:
  """Whether Orbax committed this step folder: it writes `commit_success.txt` and the commit time
  into `_CHECKPOINT_METADATA` before renaming the temporary folder to the step's name."""
  if os.path.isfile(os.path.join(step_dir, "commit_success.txt")):
    return True
  try:
    with open(os.path.join(step_dir, "_CHECKPOINT_METADATA")) as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return False
  return isinstance(meta, dict) and meta.get("commit_timestamp_nsecs") is not None


def _bit_sum(x) -> jax.Array:
  """The sum of an array's raw words as uint32, wrapping: the same on any sharding (integer
  addition is exact in any order), and changed by any single flipped bit."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  words = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}"))
  return jnp.sum(words.astype(jnp.uint32), dtype=jnp.uint32)


_bit_sums = jax.jit(lambda xs: [_bit_sum(x) for x in xs])


def fingerprint(state) -> dict:
  """{key path: bit sum} of every array in `state`."""
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  sums = jax.device_get(_bit_sums([x for _, x in flat]))
  return {jax.tree_util.keystr(p): int(v) for (p, _), v in zip(flat, sums)}


def _check_fingerprint(mngr, step: int, restored: dict) -> None:
  """Raises ValueError when arrays restored from `step` ({"state": the train state or part of
  it}) differ from those saved (a checkpoint saved without a fingerprint is not checked)."""
  if not os.path.isdir(os.path.join(str(mngr.directory), str(step), "fingerprint")):
    return
  saved = mngr.restore(step, args=ocp.args.Composite(
      fingerprint=ocp.args.JsonRestore()))["fingerprint"]
  changed = [k for k, v in fingerprint(restored["state"]).items() if saved.get(k) != v]
  if changed:
    raise ValueError(f"{len(changed)} arrays differ from the saved ones (first: {changed[0]})")


class _ReadOnlyNotices(logging.Filter):
  """Drops the warnings Orbax logs for every read-only CheckpointManager (options it resets,
  'Given directory is read only'); anything else passes."""

  def filter(self, record: logging.LogRecord) -> bool:
    msg = str(record.msg)
    return not (msg.startswith("CheckpointManagerOptions.read_only=True, setting")
                or msg.startswith("Given directory is read only"))


@contextlib.contextmanager
def _read_only_manager(d: str):
  """A read-only CheckpointManager of checkpoint dir `d`, without Orbax's read-only notices."""
  quiet = _ReadOnlyNotices()
  absl_log = logging.getLogger("absl")
  absl_log.addFilter(quiet)
  try:
    mngr = ocp.CheckpointManager(d, options=ocp.CheckpointManagerOptions(create=False,
                                                                        read_only=True))
  finally:
    absl_log.removeFilter(quiet)
  with mngr:
    yield mngr


def list_steps(workdir: str) -> list[int]:
  """Steps with a finished checkpoint, ascending (half-written, empty or hand-made step folders,
  and Orbax's temporary folders, are not listed)."""
  d = checkpoint_dir(workdir)
  if not os.path.isdir(d):
    return []
  return sorted(int(m.step) for m in ocp.step.standard_name_format().find_all(d)
                if _is_finished(str(m.path)))


class RunCheckpoints:
  """Saving and restoring a run's checkpoints, with retention and corrupt-checkpoint fallback."""

  def __init__(self, workdir: str, ckpt_cfg):
    self.workdir = os.path.abspath(workdir)
    keep_every = int(ckpt_cfg.get("keep_every", 0) or 0)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max(1, int(ckpt_cfg.get("keep", 3))),
        keep_period=keep_every or None,
        enable_async_checkpointing=bool(ckpt_cfg.get("async_save", True)),
        cleanup_tmp_directories=True,  # leftovers of a save cut short by a kill
        create=True)
    self.mngr = ocp.CheckpointManager(checkpoint_dir(workdir), options=options)

  def steps(self) -> list[int]:
    return sorted(int(s) for s in self.mngr.all_steps())

  def save(self, step: int, state, data_iter) -> None:
    """Starts saving (async): returns once device arrays are copied off the accelerator."""
    if step in self.steps():
      return
    self.mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter),
        fingerprint=ocp.args.JsonSave(fingerprint(state))), force=True)

  def restore_latest(self, abstract_state, data_iter):
    """(step, state) of the newest readable checkpoint, or None when there is none.

    A checkpoint whose train state fails to restore while an older one restores is moved to
    `corrupt_checkpoints/` with a warning. When none restores, the cause is the same for all
    (a changed program, too little memory, an unreachable file system): RunError, and nothing
    is moved, so a run is never silently restarted from scratch. A step folder Orbax never
    committed (see `list_steps`) is not tried: it is moved aside with a warning, and when it is
    all there is, the run starts from step 0. The data iterator is restored
    from the same step; if its saved state is unusable (e.g. the number of processes changed)
    or is not at the step, it is derived from the step, which gives the same batches (batch t
    depends only on the seed and t).
    """
    failed = []  # (step, reason), newest first
    unfinished = []  # step folders Orbax never committed (empty, hand-made): list_steps skips them
    for step in reversed(self.steps()):
      if not _is_finished(os.path.join(checkpoint_dir(self.workdir), str(step))):
        unfinished.append(step)
        continue
      try:
        out = self.mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state)))
        _check_fingerprint(self.mngr, step, {"state": out["state"]})
      except Exception as e:  # pylint: disable=broad-except
        failed.append((step, first_line(e)))
        continue
      for bad, reason in failed:
        self._quarantine(bad, reason)
      for bad in unfinished:
        self._quarantine(bad, "an unfinished save")
      self._restore_data(step, data_iter)
      return step, out["state"]
    if failed:
      step, reason = failed[0]
      raise RunError(
          f"no checkpoint in {checkpoint_dir(self.workdir)} can be restored (steps "
          f"{', '.join(str(s) for s, _ in reversed(failed))}; step {step}: {reason[:300]}); nothing "
          "was moved: fix the cause, or move checkpoints/ aside to start the run over")
    for bad in unfinished:  # no finished checkpoint at all: the run starts from step 0
      self._quarantine(bad, "an unfinished save", then="starting the run from step 0")
    return None

  def _restore_data(self, step: int, data_iter) -> None:
    try:
      self.mngr.restore(step, args=ocp.args.Composite(
          data=grain.checkpoint.CheckpointRestore(data_iter)))
      saved = data_iter.get_state()
    except Exception as e:  # pylint: disable=broad-except
      _warn(f"data iterator state of checkpoint {step} not restored ({first_line(e, 200)}); "
            f"continuing from batch {step}")
      data_iter.set_state({"next_index": step})
      return
    if isinstance(saved, dict) and saved.get("next_index", step) != step:
      _warn(f"data iterator state of checkpoint {step} is at batch {saved.get('next_index')}, "
            f"not {step}; continuing from batch {step}")
      data_iter.set_state({"next_index": step})

  def _quarantine(self, step: int, reason: str,
                  then: str = "resuming from the previous checkpoint") -> None:
    src = os.path.join(checkpoint_dir(self.workdir), str(step))
    dst = os.path.join(self.workdir, "corrupt_checkpoints", f"{step}-{int(time.time())}")
    msg = f"checkpoint {src} is unreadable ({reason[:300]}); moved to {dst}, {then}"
    _warn(msg)
    if jax.process_index() == 0 and os.path.isdir(src):
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      shutil.move(src, dst)
    self.mngr.reload()

  def wait(self) -> None:
    self.mngr.wait_until_finished()

  def close(self) -> None:
    self.mngr.wait_until_finished()
    self.mngr.close()


def restore_params(workdir: str, step: int | None = None):
  """Model weights of a run: (ModelConfig, params as a tree of jax arrays, step).

  step=None takes the latest checkpoint. Arrays are restored onto the default device.
  """
  from slmjax.model import abstract_params  # pylint: disable=g-import-not-at-top
  from slmjax.train.validate import model_config  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top

  cfg_json = read_json(os.path.join(workdir, "config.json"))
  if cfg_json is None:
    raise RunError(f"{workdir} is not a run workdir (no config.json)")
  model_cfg = model_config(ml_collections.ConfigDict(cfg_json))
  steps = list_steps(workdir)
  if not steps:
    raise RunError(f"run {workdir} has no checkpoint")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise RunError(f"run {workdir} has no checkpoint at step {step} (has {steps})")
  abstract = abstract_params(model_cfg)
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract)
  with _read_only_manager(checkpoint_dir(workdir)) as mngr:
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item={"params": abstract}, restore_args={"params": restore_args},
        partial_restore=True)))
    try:
      _check_fingerprint(mngr, step, out)
    except ValueError as e:
      raise RunError(f"checkpoint {step} of run {workdir} is damaged ({e})") from None
  params = jax.tree.map(jax.numpy.asarray, out["state"]["params"])
  return model_cfg, params, step
