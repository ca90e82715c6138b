"""The small files of a run workdir: config.json (with conflict check) and run.json."""

from __future__ import annotations

import json
import os
import sys

from slmjax import fileio


class RunError(RuntimeError):
  """A run cannot start or continue; the one-line message says why."""


# Fields that may differ between launches in one workdir: they change how a run is executed,
# logged or stored, not the numbers it computes (train.peak_flops: only the MFU figures).
_FREE_PREFIXES = ("mesh.", "checkpoint.", "train.log_every", "train.eval_every",
                  "train.eval_batches", "train.final_eval_batches", "train.profile",
                  "train.progress", "train.peak_flops", "data.num_threads", "data.prefetch",
                  "model.attention", "model.attention_block", "model.remat",
                  "train.micro_batches")

# Fields added after runs already existed: a workdir whose config.json lacks one ran with its
# default, so the absent field and the default do not conflict.
_ADDED_DEFAULTS = {"data.max_unique_tokens": 0}



def write_json(path: str, obj) -> None:
  """Writes JSON atomically (temporary file, then rename)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fileio.atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_default) + "\n")


def _default(x):
  if hasattr(x, "item"):
    return x.item()
  if hasattr(x, "tolist"):
    return x.tolist()
  return str(x)


def read_json(path: str, default=None, fix: str = "repair it"):
  """The JSON object in path (default when there is none); RunError with `fix` when unreadable."""
  if not os.path.exists(path):
    return default
  try:
    return fileio.read_json_object(path)
  except OSError as e:  # a directory, no permission
    raise RunError(f"{path} cannot be read ({e.strerror}); {fix}") from None
  except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
    raise RunError(f"{path} is unreadable, not valid JSON ({e}); {fix}") from None
  except fileio.NotAJSONObject as e:
    raise RunError(f"{path} is unreadable, a JSON {e.kind} instead of an object; {fix}") from None


def config_dict(config) -> dict:
  """The resolved config as plain JSON-able nested dicts."""
  return json.loads(json.dumps(config.to_dict() if hasattr(config, "to_dict") else config,
                               default=_default))


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def resolved_dtype(name) -> str:
  """The compute dtype that model.dtype `name` gives on this machine ("auto": float32 on CPU,
  bfloat16 on GPU/TPU), as run.json's `compute_dtype` records it."""
  from slmjax.model.config import resolve_dtype  # pylint: disable=g-import-not-at-top
  return str(resolve_dtype(name))


def _steps(cfg: dict) -> int | None:
  """The updates of a run (validate.total_steps) from its config as config.json holds it; None
  when the config cannot say."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from slmjax.train.validate import total_steps  # pylint: disable=g-import-not-at-top
  try:
    return total_steps(ml_collections.ConfigDict(cfg))
  except (AttributeError, KeyError, TypeError, ZeroDivisionError):
    return None


def config_conflicts(old: dict, new: dict, compute_dtype: str | None = None,
                     data_may_move: bool = False) -> list[str]:
  """'field: old vs new' for every field that differs and changes the run's math.

  `compute_dtype`: the resolved dtype run.json recorded; model.dtype "auto" on either side then
  stands for it, so an explicit model.dtype equal to it is no conflict (whether "auto" resolves
  to it on this machine is claim_workdir's check). `data_may_move`: data.path compared by its
  number of datasets only (an unfinished run resumed where its data is now mounted: the trainer
  checks the datasets' counts against run.json before it resumes).
  """
  a, b = _flatten(old), _flatten(new)
  for k, v in _ADDED_DEFAULTS.items():
    a.setdefault(k, v)
    b.setdefault(k, v)
  if compute_dtype:
    for d in (a, b):
      if d.get("model.dtype") == "auto":
        d["model.dtype"] = compute_dtype
  # train.tokens only sets the number of updates when train.steps is 0: another value that leaves
  # them (and so warm-up and schedule) as they were, say any with train.steps > 0, is no conflict
  steps = _steps(old)
  same_steps = (steps is not None and steps == _steps(new)
                and a.get("train.steps") == b.get("train.steps"))
  if data_may_move:
    for d in (a, b):
      if "data.path" in d:
        d["data.path"] = f"{len(_paths(d['data.path']))} path(s)"
  out = []
  for k in sorted(set(a) | set(b)):
    if k.startswith(_FREE_PREFIXES) or (k == "train.tokens" and same_steps):
      continue
    if a.get(k, "<absent>") != b.get(k, "<absent>"):
      out.append(f"{k}: {a.get(k, '<absent>')!r} in the workdir vs {b.get(k, '<absent>')!r} now")
  return out


def _paths(value) -> list[str]:
  """data.path's datasets (joined by ",", as data.pipeline reads them)."""
  return [p.strip() for p in str(value or "").split(",") if p.strip()]


def claim_workdir(workdir: str, config, write: bool = True) -> bool:
  """Checks the new config against the workdir's config.json, then (`write`) writes it.

  Returns True when the workdir already held this run (a relaunch). Raises RunError naming the
  conflicting fields when the workdir belongs to a different run; nothing is written then.
  `write=False` only checks (and makes the folder): the trainer checks before it waits for the
  workdir lock and writes once it holds it, so a relaunch that changes a free field (say
  `checkpoint.*`) leaves config.json alone while another trainer still runs there.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise RunError(f"workdir {workdir} is an existing file, not a directory; pass a directory")
  path = os.path.join(workdir, "config.json")
  new = config_dict(config)
  old = read_json(path, fix="repair it (it records the run's config) or use a new workdir; "
                  "nothing was changed")
  run = read_json(os.path.join(workdir, "run.json"), fix="repair it or move it aside (a relaunch "
                  "writes a new one); nothing was changed") or {}
  recorded = run.get("compute_dtype")  # absent in a run.json written before the field
  if old is not None:
    # an unfinished run's unit dataset may move (a new mount): its contents are checked against
    # run.json's token and row counts before the resume (loop._check_same_data); a finished run's
    # record stays its data's
    diff = config_conflicts(old, new, recorded, data_may_move=run.get("final_test_loss") is None)
    if diff:
      raise RunError(f"workdir {workdir} holds a run with another config ({'; '.join(diff)}); "
                     "use a new workdir or the same config")
    dtype = new.get("model", {}).get("dtype", "auto")
    # A finished run computes nothing more; an unfinished one would continue in another dtype.
    if recorded and run.get("final_test_loss") is None and resolved_dtype(dtype) != recorded:
      raise RunError(f"workdir {workdir} holds a run that computed in {recorded}, but "
                     f"model.dtype={dtype!r} resolves to {resolved_dtype(dtype)} here, so it would "
                     "not continue exactly; nothing was changed: to continue it in "
                     f"{recorded} here, pass --config.model.dtype={recorded}")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:  # a file on the path, no permission
    raise RunError(f"cannot create workdir {workdir}: {e.strerror}") from None
  if write:
    write_json(path, new)
  return old is not None


def update_run_json(workdir: str, drop: tuple = (), **fields) -> dict:
  """Merges fields into run.json, less the keys in `drop` (atomically); returns the result."""
  path = os.path.join(workdir, "run.json")
  run = {k: v for k, v in read_json(path, {}).items() if k not in drop}
  run.update(fields)
  write_json(path, run)
  return run


LOCK_WAIT_ENV = "SLMJAX_WORKDIR_LOCK_WAIT"  # seconds a trainer waits for another one to exit


def workdir_lock(workdir: str, wait_s: float | None = None, stop=None) -> fileio.PidLock | None:
  """One trainer per workdir: an exclusive flock on WORKDIR/.trainer.lock, held from before the
  run's files are read for a resume until they are all written (the kernel drops it if the
  process dies).

  A preempted trainer saves before it exits; a relaunch that starts meanwhile (a sweep launched
  again, a requeued job) waits for it (up to $SLMJAX_WORKDIR_LOCK_WAIT seconds, default 600)
  instead of resuming from an older checkpoint while the other one still rewrites metrics.jsonl
  and run.json. None when `stop()` turns true while waiting (a preemption notice): the caller
  then holds no lock and must leave the run's files alone. A file system without flock gives no
  lock (and no error).
  """
  if wait_s is None:
    value = os.environ.get(LOCK_WAIT_ENV, "600")
    try:
      wait_s = float(value or 0)
    except ValueError:
      raise RunError(f"${LOCK_WAIT_ENV}={value!r} is not a number of seconds") from None

  def tell(pid):
    print(f"slmjax-train: waiting for the trainer (pid {pid}) still running in {workdir} to exit",
          file=sys.stderr, flush=True)

  try:
    return fileio.PidLock(os.path.join(workdir, ".trainer.lock"), wait_s, on_wait=tell,
                          required=False, stop=stop)
  except fileio.LockWaitStopped:
    return None
  except fileio.LockHeld as e:
    raise RunError(f"another trainer (pid {e.pid}) is running in {workdir}; stop it or "
                   "wait for it to exit") from None

