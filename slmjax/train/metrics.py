"""Run metrics: metrics.jsonl (one JSON object per logged step or evaluation) and TensorBoard."""

from __future__ import annotations

import json
import math
import os

from slmjax import fileio


class MetricsWriter:
  """Appends rows to metrics.jsonl and scalars to TensorBoard (process 0 only).

  On a relaunch from step s, rows with step > s (written after the checkpoint the run resumes
  from) are dropped, so the file ends up exactly as an uninterrupted run writes it; TensorBoard
  is told to hide its events of those steps.
  """

  def __init__(self, workdir: str, resume_step: int, enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if not enabled:
      return
    self._truncate(resume_step)
    self._f = open(self.path, "a")
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      # TensorBoard hides earlier events from this step on, also those of a launch killed
      # before its first checkpoint (resume_step 0)
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)
    except ImportError:  # TensorBoard is optional; metrics.jsonl is the record
      self._tb = None

  def _truncate(self, step: int) -> None:
    if not os.path.exists(self.path):
      return
    keep = []
    with open(self.path) as f:
      for line in f:
        try:
          row = json.loads(line)
        except json.JSONDecodeError:
          continue  # a line cut by a kill
        if row.get("step", 0) <= step:
          keep.append(json.dumps(row) + "\n")
    fileio.atomic_write_text(self.path, "".join(keep))

  def write(self, row: dict) -> None:
    if not self.enabled:
      return
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in row.items()}
    self._f.write(json.dumps(clean) + "\n")
    self._f.flush()
    if self._tb is not None:
      for k, v in row.items():
        if k != "step" and isinstance(v, (int, float)) and v is not None:
          self._tb.add_scalar(k, v, row["step"])

  def close(self) -> None:
    if not self.enabled:
      return
    self._f.close()
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  """All rows of a run's metrics.jsonl."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
