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
import dataclasses
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
from etils import epath

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
  sums = fingerprint(restored["state"])  # first: a cross-process sum that every process computes
  if not os.path.isdir(os.path.join(str(mngr.directory), str(step), "fingerprint")):
    return
  saved = _read_item(mngr, step, "fingerprint", ocp.JsonCheckpointHandler(),
                     ocp.args.JsonRestore())
  changed = [k for k, v in sums.items() if saved.get(k) != v]
  if changed:
    raise ValueError(f"{len(changed)} arrays differ from the saved ones (first: {changed[0]})")


def _read_item(mngr, step: int, name: str, handler, args):
  """Item `name` of checkpoint `step`, read by its handler alone. CheckpointManager.restore ends
  in a barrier of all processes: one whose read failed before it would leave the others there."""
  try:
    return handler.restore(epath.Path(str(mngr.directory)) / str(step) / name, args=args)
  finally:
    handler.close()


def min_over_processes(value: int) -> int:
  """The smallest `value` over all JAX processes, for decisions they must share. A host-level
  collective: every process calls it, in the same order; `value` itself with one process."""
  if jax.process_count() == 1:
    return int(value)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return int(np.min(multihost_utils.process_allgather(np.int32(value))))


def _newest_everywhere(steps: list[int]) -> int | None:
  """The step every process tries next: the smallest of the processes' newest `steps` (they
  list the same folder, so normally one step); None when a process has none left."""
  newest = min_over_processes(max(steps, default=-1))
  return None if newest < 0 else newest


def all_processes(ok: bool) -> bool:
  """Whether `ok` holds on every process (each one must call this)."""
  return bool(min_over_processes(int(ok)))


def _on_all_processes(fn, elsewhere: str):
  """(fn(), None) when fn returns on every process; else (None, why): this process's error, or
  `elsewhere` named as another process's when only another one failed."""
  try:
    out, reason = fn(), None
  except Exception as e:  # pylint: disable=broad-except
    out, reason = None, first_line(e)
  if not all_processes(reason is None):
    return None, reason or f"{elsewhere} on another process"
  return out, None


def _move_aside(moves: list) -> None:
  """Moves each (src, dst) step folder that is there."""
  for src, dst in moves:
    if os.path.isdir(src):
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      shutil.move(src, dst)


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
    self._closed = False

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

    With several processes every one tries the same step, and a step counts as restored only
    when it restored on all of them: they resume from one step, never from different ones.
    """
    d = checkpoint_dir(self.workdir)
    unfinished = []  # step folders Orbax never committed (empty, hand-made): list_steps skips them
    finished = []
    for step in self.steps():
      (finished if _is_finished(os.path.join(d, str(step))) else unfinished).append(step)
    failed = []  # (step, reason), newest first
    step = _newest_everywhere(finished)
    while step is not None:
      state, reason = self._restore_state(step, abstract_state)
      if reason is None:
        self._quarantine([*failed, *((bad, "an unfinished save") for bad in unfinished)])
        self._restore_data(step, data_iter)
        return step, state
      failed.append((step, reason))
      step = _newest_everywhere([s for s in finished if s < step])
    if failed:
      step, reason = failed[0]
      raise RunError(
          f"no checkpoint in {d} can be restored (steps "
          f"{', '.join(str(s) for s, _ in reversed(failed))}; step {step}: {reason[:300]}); nothing "
          "was moved: fix the cause, or move checkpoints/ aside to start the run over")
    # no finished checkpoint at all: the run starts from step 0
    self._quarantine([(bad, "an unfinished save") for bad in unfinished],
                     then="starting the run from step 0")
    return None

  def _restore_state(self, step: int, abstract_state):
    """(state, None) when `step` restores, fingerprint included, on every process; else (None,
    why). Every process calls it for the same step: the fingerprint is a cross-process sum."""
    state, reason = _on_all_processes(lambda: _read_item(
        self.mngr, step, "state", ocp.StandardCheckpointHandler(),
        ocp.args.StandardRestore(abstract_state)), "it did not restore")
    if reason is None:
      _, reason = _on_all_processes(
          lambda: _check_fingerprint(self.mngr, step, {"state": state}), "arrays differ")
    return (state, None) if reason is None else (None, reason)

  def _restore_data(self, step: int, data_iter) -> None:
    try:
      _read_item(self.mngr, step, "data", grain.checkpoint.CheckpointHandler(),
                 grain.checkpoint.CheckpointRestore(data_iter))
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

  def _quarantine(self, bad: list, then: str = "resuming from the previous checkpoint") -> None:
    """Moves the (step, reason) checkpoints to corrupt_checkpoints/ (process 0), with a warning
    on every process. Every process calls it: each lists the checkpoints again once process 0
    has moved them, or one that listed them before would skip the next save of such a step.
    A move that fails stops every process with RunError (none waits for process 0 alone)."""
    moves = []
    for step, reason in bad:
      src = os.path.join(checkpoint_dir(self.workdir), str(step))
      dst = os.path.join(self.workdir, "corrupt_checkpoints", f"{step}-{int(time.time())}")
      _warn(f"checkpoint {src} is unreadable ({reason[:300]}); moved to {dst}, {then}")
      moves.append((src, dst))
    # the agreement is also the barrier: no process lists the checkpoints before the moves end
    _, why = _on_all_processes(lambda: _move_aside(moves) if jax.process_index() == 0 else None,
                               "moving it aside failed")
    if why is not None:
      raise RunError(f"checkpoints of {self.workdir} could not be moved to corrupt_checkpoints/ "
                     f"({why[:300]}); fix that and relaunch")
    self.mngr.reload()

  def wait(self) -> None:
    self.mngr.wait_until_finished()

  def close(self) -> None:
    """Waits for the last save (raising its error, once), then closes; later calls do nothing."""
    if self._closed:
      return
    self._closed = True
    self.mngr.wait_until_finished()
    self.mngr.close()


def restore_params(workdir: str, step: int | None = None):
  """Model weights of a run: (ModelConfig, params as a tree of jax arrays, step).

  step=None takes the latest checkpoint. Arrays are restored onto the default device. The
  config's attention is "auto", whatever kernel the run trained with.
  """
  from slmjax.model import abstract_params  # pylint: disable=g-import-not-at-top
  from slmjax.train.validate import model_config  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top

  cfg_json = read_json(os.path.join(workdir, "config.json"))
  if cfg_json is None:
    raise RunError(f"{workdir} is not a run workdir (no config.json)")
  # The attention kernel is the training platform's choice (splash on TPU, cuDNN on GPU); whoever
  # reads the weights back picks the one of the platform it runs on.
  model_cfg = dataclasses.replace(model_config(ml_collections.ConfigDict(cfg_json)), attention="auto")
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
    try:
      out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
          item={"params": abstract}, restore_args={"params": restore_args},
          partial_restore=True)))
    except (ValueError, OSError) as e:  # truncated or missing array files, shape mismatch
      raise RunError(f"checkpoint {step} of run {workdir} is damaged: it cannot be read "
                     f"({str(e).splitlines()[0][:300]})") from None
    try:
      _check_fingerprint(mngr, step, out)
    except ValueError as e:
      raise RunError(f"checkpoint {step} of run {workdir} is damaged ({e})") from None
  params = jax.tree.map(jax.numpy.asarray, out["state"]["params"])
  return model_cfg, params, step
