"""The training loop: `train(config, workdir)`.

One run per workdir. A relaunch with the same workdir resumes from the newest readable checkpoint
(train state and data iterator together), so a preempted or killed run ends bit-for-bit as an
uninterrupted one. Step metrics are fetched from the device one step late (the next step is
already queued), so logging never stalls the accelerator.
"""

from __future__ import annotations

import math
import os
import sys
import time

from absl import logging as absl_logging
import jax
import numpy as np

from slmjax.data import DataError, build_pipeline, mixture_line
from slmjax.errortext import first_line
from slmjax.train import flops as flops_lib
from slmjax.train import preemption
from slmjax.train.checkpoint import RunCheckpoints, list_steps
from slmjax.train.mesh import make_mesh
from slmjax.train.metrics import MetricsWriter, read_metrics
from slmjax.train.run_files import (RunError, claim_workdir, read_json, resolved_dtype,
                                    update_run_json, workdir_lock)
from slmjax.train.sharding import make_global_batch, process_rows
from slmjax.train.step import (abstract_train_state, init_train_state, make_eval_step,
                               make_train_step)
from slmjax.train.validate import ConfigError, model_config, run_plan, validate

# Errors that mean bad input (config, data, workdir) or a diverged run: report their one-line
# message, not a traceback.
USER_ERRORS = (ConfigError, DataError, RunError)


def _peak(config, model_cfg) -> tuple[float, str]:
  given = float(config.train.get("peak_flops", 0) or 0)
  if given > 0:
    return given, "config"
  dtype = "float32" if jax.devices()[0].platform == "cpu" else "bfloat16"
  if model_cfg.dtype not in ("auto", None):
    dtype = str(model_cfg.dtype)
  return flops_lib.peak_flops(jax.devices()[0], dtype)


class _Evaluator:
  """Held-out loss: mean NLL per token, per dataset and over the natural-speech datasets."""

  def __init__(self, config, mesh, pipeline):
    self.mesh, self.pipeline = mesh, pipeline
    # Rows of one micro-batch per step: the forward of a whole batch needs the memory that
    # train.micro_batches was set to avoid. Batch counts scale up, so the same rows are read.
    micro = int(config.train.get("micro_batches", 1) or 1)
    self.batch = int(config.train.batch_size) // micro
    self.max_batches = int(config.train.get("eval_batches", 0) or 0) * micro
    self.final_batches = int(config.train.get("final_eval_batches", 0) or 0) * micro
    self.step = make_eval_step(config, mesh)
    self.slot = process_rows(mesh, self.batch)   # the rows of each batch this process feeds

  def __call__(self, params, final: bool = False, stop=None) -> dict | None:
    """Periodic evaluations read ``eval_batches`` batches; the final one ``final_eval_batches``.
    None when `stop()` turned true between two batches (a preemption notice): the evaluation is
    abandoned, not reported on part of the data."""
    limit = self.final_batches if final else self.max_batches
    sums = {}
    for ev in self.pipeline.evals:
      # One step in flight: the next batch is read on the host while the previous step runs, and
      # its sums are collected before the next step starts. Independent steps queued back to back
      # deadlock on several CPU devices: each holds a runtime thread in its cross-device sum, and
      # the steps of one device can take every thread before another device starts its first.
      totals = np.zeros(2)  # (NLL, tokens), float64 on the host
      running = None
      for local in ev.batches(self.batch, *self.slot, limit):
        if stop is not None and stop():
          return None
        batch = make_global_batch(local, self.mesh)
        if running is not None:
          totals += jax.device_get(running)
        running = self.step(params, batch)
      if running is not None:
        totals += jax.device_get(running)
      sums[ev.name] = (float(totals[0]), float(totals[1]), ev.synthetic)
    natural = {k: v for k, v in sums.items() if not v[2]} or sums
    n = sum(v[1] for v in natural.values())
    out = {"test_loss": sum(v[0] for v in natural.values()) / n, "test_tokens": int(n)}
    if len(sums) > 1:
      out.update({f"test_loss/{k}": v[0] / v[1] for k, v in sums.items()})
    return out


def train(config, workdir: str) -> dict:
  """Trains (or resumes) the run of `config` in `workdir`; returns the final run.json dict.

  Raises ConfigError / DataError / RunError with a one-line message on bad input, before any
  file of an existing run is changed. SIGTERM, from the start of this call until the last
  checkpoint is on disk, stops the run cleanly (status `preempted`, checkpoint where it stands).
  """
  owns_handler = preemption.install()
  locks = []
  try:
    return _train(config, workdir, locks)
  finally:
    for lock in filter(None, locks):
      lock.release()
    if owns_handler:
      preemption.uninstall()


def _completion(final: dict, pipeline) -> dict:
  """The run.json fields of a completed run, from its final evaluation."""
  return dict(final_test_loss=final.get("test_loss"), final_test_tokens=final.get("test_tokens"),
              test_loss_by_dataset={k.split("/", 1)[1]: v for k, v in final.items()
                                    if k.startswith("test_loss/")} or
              {pipeline.evals[0].name: final.get("test_loss")})


def _write_final_row(workdir: str, steps: int, final: dict) -> None:
  """Adds the final evaluation's row to metrics.jsonl unless it is there (a kill during the
  final evaluation comes after the last checkpoint, before the row)."""
  writer = MetricsWriter(workdir, steps)
  try:
    if not _has_eval_row(workdir, steps):
      writer.write({"step": steps, **final})
  finally:
    writer.close()


_TRAIN, _FINISHED, _STOPPED = range(3)


def _check_packed_rows(workdir: str, before: dict, data: dict) -> None:
  """RunError when a packed run's checkpoints were trained on rows of another layout (before
  each utterance began with an EOS): resuming would change its data mid-run. `before`: run.json's
  data record, `data`: this launch's (DataPipeline.info)."""
  if data.get("mode") == "packed" and before.get("mode") == "packed" and \
      before.get("packed_rows") != data["packed_rows"]:
    raise RunError(f"run {workdir} was trained on packed rows of an earlier slmjax (each utterance "
                   f"began at its first unit, no EOS before it); this one packs them as "
                   f"{data['packed_rows']!r}, so resuming would change its data mid-run: train it "
                   "again in a new workdir, or resume it with the slmjax that began it")


# Token and row counts of each dataset that run.json records (data.datasets): a unit dataset
# encoded again at the same path changes them; its path may move (a new mount), they may not.
_DATA_COUNTS = ("rows_per_batch", "train_tokens", "unique_tokens", "test_tokens")


def _check_same_data(workdir: str, before: dict, data: dict) -> None:
  """RunError when the datasets differ from those run.json recorded for the run's checkpoints
  (the same config, but the unit dataset at data.path was written again). `before`: run.json's
  data record, `data`: this launch's (DataPipeline.info)."""
  before = before.get("datasets")
  if not before:
    return
  now = data["datasets"]
  changed = []
  if len(before) != len(now):
    changed.append(f"{len(before)} datasets then, {len(now)} now")
  for old, new in zip(before, now):
    changed += [f"{new['name']} {k} {old[k]} then, {new[k]} now" for k in _DATA_COUNTS
                if k in old and k in new and old[k] != new[k]]
  if changed:
    raise RunError(f"run {workdir}: its training data changed since the run began "
                   f"({'; '.join(changed[:4])}), so resuming would change its data mid-run: "
                   "restore the data it began on, or train it again in a new workdir")


def _has_eval_row(workdir: str, step: int) -> bool:
  """metrics.jsonl holds an evaluation row of `step`."""
  return any(r.get("step") == step and "test_loss" in r for r in read_metrics(workdir))


def _from_process_0(value: int) -> int:
  """Process 0's `value` on every process (what it alone read of the run's files)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    value = int(multihost_utils.broadcast_one_to_all(np.int32(value)))
  return value


def _eval_missing(workdir: str, start: int, eval_every: int, primary: bool) -> bool:
  """Whether the resumed step is an evaluation step without its evaluation row in metrics.jsonl
  (decided by process 0 for all)."""
  return bool(_from_process_0(primary and start > 0 and eval_every and start % eval_every == 0
                              and not _has_eval_row(workdir, start)))


def _launch_kind(workdir: str, primary: bool, stopped: bool) -> int:
  """What this launch does, decided by process 0 for all: _STOPPED (a preemption notice came
  while it waited for the workdir lock), _FINISHED (run.json records the final evaluation) or
  _TRAIN."""
  kind = _TRAIN
  if stopped:
    kind = _STOPPED
  elif primary and read_json(os.path.join(workdir, "run.json"), {}).get(
      "final_test_loss") is not None:
    kind = _FINISHED
  return _from_process_0(kind)


def _train(config, workdir: str, locks: list) -> dict:
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if absl_logging.get_verbosity() >= absl_logging.INFO:
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
  validate(config, jax.device_count())
  primary = jax.process_index() == 0
  mesh = make_mesh(config.mesh)
  pipeline = build_pipeline(config, *process_rows(mesh, int(config.train.batch_size)))
  stopped = False
  if primary:
    claim_workdir(workdir, config, write=False)  # another run's workdir is refused before any wait
    # waits for a trainer still saving in this workdir; a notice meanwhile ends the wait
    locks.append(workdir_lock(workdir, stop=preemption.requested))
    stopped = locks[-1] is None
  kind = _launch_kind(workdir, primary, stopped)
  if primary and kind == _TRAIN:  # a finished run's config.json stays as it is
    claim_workdir(workdir, config)
  if kind == _STOPPED:  # the other trainer owns the run's files: none is touched
    if primary:
      print(f"slmjax-train: a preemption notice came while waiting for the other trainer in "
            f"{workdir}; stopped before training, nothing changed", file=sys.stderr, flush=True)
    return dict(run_id=os.path.basename(workdir), status="preempted")
  if kind == _FINISHED:  # a finished run launched again: its record stays as it is,
    return read_json(os.path.join(workdir, "run.json"), {})  # checkpoints kept or not
  model_cfg = model_config(config)
  plan = run_plan(config, jax.device_count())  # the same figures --dry_run prints
  steps, batch_tokens, fpt = plan["steps"], plan["batch_tokens"], plan["flops_per_token"]
  data = pipeline.info()
  if primary and (line := mixture_line(data)):
    print(f"slmjax-train: {line}", file=sys.stderr, flush=True)
  before = read_json(os.path.join(workdir, "run.json"), {}).get("data") or {}
  if list_steps(workdir):  # before anything of the run is changed, the restore included
    _check_same_data(workdir, before, data)
    _check_packed_rows(workdir, before, data)
  # closed whatever happens (a restore that raises included), the checkpoints first: an
  # unfinished save still reads the data iterator's state
  data_iter = pipeline.train_iter()
  ckpts = bar = writer = None
  status = "running"
  try:
    ckpts = RunCheckpoints(workdir, config.checkpoint)
    restored = ckpts.restore_latest(abstract_train_state(config, mesh), data_iter)
    if restored is None:
      start, state = 0, init_train_state(config, mesh, jax.random.key(int(config.seed)))
    else:
      start, state = restored
    unique = pipeline.unique_tokens
    run = dict(run_id=os.path.basename(workdir), **plan, unique_tokens=unique,
               trained_tokens=pipeline.trained_tokens(steps), epochs=pipeline.total_epochs(steps),
               epochs_by_dataset=pipeline.epochs(steps),
               data=data, devices=jax.device_count(), processes=jax.process_count(),
               resumed_from=start or None, compute_dtype=resolved_dtype(model_cfg.dtype))
    if primary:  # an earlier launch's error and speed do not describe this one
      update_run_json(workdir, drop=("error", "throughput"), **run, status="running")
    peak, peak_src = _peak(config, model_cfg)
    # A notice stops an evaluation between batches where the processes need not agree on it: with
    # one process. With several, JAX's preemption service picks a step for all, so they finish it.
    interrupt = preemption.requested if jax.process_count() == 1 else None
    # A run killed after its last checkpoint but before run.json recorded the final evaluation
    # (the checkpoint is written first) evaluates the restored weights.
    if start >= steps:
      final = _Evaluator(config, mesh, pipeline)(state["params"], final=True, stop=interrupt)
      if final is None:  # the weights are on disk: the next launch evaluates them
        out = dict(status="preempted", peak_flops=peak, peak_flops_source=peak_src)
        return update_run_json(workdir, **out) if primary else {**run, **out}
      if primary:
        _write_final_row(workdir, steps, final)
      out = dict(status="completed", **_completion(final, pipeline), peak_flops=peak,
                 peak_flops_source=peak_src)
      return update_run_json(workdir, **out) if primary else {**run, **out}

    n_peaks = flops_lib.peak_devices()
    writer = MetricsWriter(workdir, start, enabled=primary)
    train_step = make_train_step(config, mesh)
    evaluate = _Evaluator(config, mesh, pipeline)
    log_every = max(1, int(config.train.get("log_every", 1)))
    eval_every = int(config.train.get("eval_every", 0) or 0)
    if _eval_missing(workdir, start, eval_every, primary):
      # the checkpoint of an evaluation step whose evaluation a notice (or a kill) cut short
      result = evaluate(state["params"], stop=interrupt)
      if result is not None:
        writer.write({"step": start, **result})
    ck_every = int(config.checkpoint.get("every_steps", 0) or 0)
    prof_start = int(config.train.get("profile_start", -1))
    prof_steps = int(config.train.get("profile_steps", 5))
    if primary and 0 < prof_start <= start:
      print(f"slmjax-train: train.profile_start={prof_start} is at or before the resumed step "
            f"{start}; no trace is recorded in this launch", file=sys.stderr)
    if prof_start <= start:
      prof_start = -1  # a trace window the resume lands in is not started, so it is not stopped
    bar = _progress(config, primary, start, steps)
    pending = None               # (step, device metrics) of the last dispatched step
    last = time.perf_counter()
    final = {}
    step_times = []              # seconds between the fetches of consecutive steps, this launch

    def fetch():
      """Brings the pending step's metrics (if any) to the host, logs them, stops on NaN/Inf."""
      nonlocal pending, last
      if pending is None:
        return
      s, m = pending
      pending = None
      m = {k: float(v) for k, v in jax.device_get(m).items()}
      now = time.perf_counter()
      dt, last = now - last, now
      step_times.append(dt)
      if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
        raise RunError(f"non-finite training loss at step {s} (loss={m['loss']}, grad_norm="
                       f"{m['grad_norm']}); stopped, the last good checkpoint is kept "
                       f"({ckpts.steps()[-1] if ckpts.steps() else 'none yet'})")
      if s % log_every == 0 or s == steps:
        tps = batch_tokens / dt
        writer.write(dict(step=s, loss=m["loss"], lr=m["lr"], grad_norm=m["grad_norm"],
                          tokens_seen=s * batch_tokens, tokens_per_sec=tps, step_time=dt,
                          mfu=flops_lib.mfu(tps, fpt["6n_attn"], peak, n_peaks),
                          mfu_palm=flops_lib.mfu(tps, fpt["6n_attn_full"], peak, n_peaks)))
      if bar is not None:
        bar.update(s - bar.n)
        bar.set_postfix(loss=f"{m['loss']:.4f}")

    def save(step):
      fetch()             # a checkpoint is only written after its loss proved finite
      ckpts.save(step, state, data_iter)

    for t in range(start, steps):
      s = t + 1
      if t == start and preemption.due(0):  # a notice during start-up: the state is the
        status = "preempted"                  # restored checkpoint (or the seed's init)
        break
      if s == prof_start:
        jax.profiler.start_trace(os.path.join(workdir, "profile"))
      local = next(data_iter)
      state, metrics = train_step(state, make_global_batch(local, mesh))
      fetch()
      pending = (s, metrics)
      if prof_start >= 0 and (s == prof_start + prof_steps - 1 or s == steps) and s >= prof_start:
        jax.block_until_ready(state)
        jax.profiler.stop_trace()
        prof_start = -1
      if s == steps:  # saved before the final evaluation: a kill or crash in it loses no
        save(s)         # training (the relaunch evaluates the restored weights)
      evaluated = True
      if (eval_every and s % eval_every == 0) or s == steps:
        fetch()
        result = evaluate(state["params"], final=s == steps, stop=interrupt)
        evaluated = result is not None
        if evaluated:
          final = result
          writer.write({"step": s, **final})
      # checked after the evaluation: a notice that came during it saves this step too (and an
      # evaluation it cut short is made by the next launch, from this step's checkpoint)
      stop = preemption.due(s - start)
      if s < steps and ((ck_every and s % ck_every == 0) or stop):
        save(s)
      if stop and (s < steps or not evaluated):
        status = "preempted"
        break
    else:
      status = "completed"
    fetch()
    # waits for the last save, inside the try: a background write that failed (a full disk)
    # is this launch's error, recorded as `failed`; run.json says completed only after it
    ckpts.close()
  except BaseException as e:
    status = "failed"
    if primary:
      update_run_json(workdir, status=status, error=first_line(e))
    raise
  finally:
    if bar is not None:
      bar.close()
    if writer is not None:
      writer.close()
    try:
      if ckpts is not None:
        ckpts.close()   # after an error: waits for a save in flight (no-op once closed above)
    finally:
      _close(data_iter)
  out = dict(status=status, peak_flops=peak, peak_flops_source=peak_src,
             **_throughput(step_times, batch_tokens, fpt, peak, n_peaks))
  if status == "completed":
    out.update(_completion(final, pipeline))
  if primary:
    return update_run_json(workdir, **out)
  return {**run, **out}


def _throughput(step_times: list, batch_tokens: int, fpt: dict, peak: float,
                n_peaks: int) -> dict:
  """The launch's typical speed for run.json: the median step time, leaving out the first step
  (compilation); {} when it timed none (run.json then has no `throughput`). Per-step figures in
  metrics.jsonl are fetch-to-fetch intervals, which an evaluation, a checkpoint or the
  one-step-late fetch stretch or shorten; the median is not."""
  timed = step_times[1:]
  if not timed:
    return {}
  dt = float(np.median(timed))
  tps = batch_tokens / dt
  return {"throughput": {"steps_timed": len(timed), "step_time": dt, "tokens_per_sec": tps,
                         "mfu": flops_lib.mfu(tps, fpt["6n_attn"], peak, n_peaks),
                         "mfu_palm": flops_lib.mfu(tps, fpt["6n_attn_full"], peak, n_peaks)}}


def _close(data_iter) -> None:
  close = getattr(data_iter, "close", None)
  if close is not None:
    close()


def _progress(config, primary, start, steps):
  if not primary or not config.train.get("progress", True):
    return None
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
