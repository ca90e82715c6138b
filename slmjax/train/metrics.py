"""Run metrics: metrics.jsonl (one JSON object per logged step or evaluation) and TensorBoard."""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import time

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
      # TensorBoard hides earlier events from this step on, also those of a launch killed
      # before its first checkpoint (resume_step 0)
      self._tb = EventFile(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)
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
    # TensorBoard first: a row in metrics.jsonl (what a relaunch keeps) is in the event file too
    if self._tb is not None:
      self._tb.write_scalars(row["step"], {k: v for k, v in row.items()
                                           if k != "step" and isinstance(v, (int, float))})
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in row.items()}
    self._f.write(json.dumps(clean) + "\n")
    self._f.flush()

  def close(self) -> None:
    if not self.enabled:
      return
    self._f.close()
    if self._tb is not None:
      self._tb.close()


class EventFile:
  """A TensorBoard event file written synchronously: each row's scalars are in the file when
  `write_scalars` returns, as metrics.jsonl's row is, so a SIGKILL loses neither.

  tensorboardX's SummaryWriter hands events to a writer thread through a queue that its
  `flush()` does not drain, so the events of the last minutes before a kill were lost.
  """

  def __init__(self, logdir: str, purge_step: int | None = None):
    # pylint: disable=g-import-not-at-top
    from tensorboardX.proto.event_pb2 import Event, SessionLog
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.record_writer import masked_crc32c
    self._event, self._summary, self._crc = Event, Summary, masked_crc32c
    os.makedirs(logdir, exist_ok=True)
    # the name TensorBoard looks for; the pid and a counter keep two launches in one second
    # on one host (a relaunch) from writing over each other's file
    stem = os.path.join(logdir, f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
                                f".{os.getpid()}")
    n = 0
    while os.path.exists(f"{stem}.{n}"):
      n += 1
    self._f = open(f"{stem}.{n}", "xb")
    self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
    if purge_step is not None:
      self._write(Event(wall_time=time.time(), step=purge_step,
                        session_log=SessionLog(status=SessionLog.START)))

  def _write(self, event) -> None:
    # TFRecord framing, as tensorboardX's RecordWriter writes it; that class opens its file with
    # "wb" (no exclusive create) and fsyncs at every flush
    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    self._f.write(header + struct.pack("<I", self._crc(header)) + data
                  + struct.pack("<I", self._crc(data)))

  def write_scalars(self, step: int, scalars: dict) -> None:
    """One event holding `scalars` ({tag: number}) at `step`, flushed to the file."""
    values = [self._summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
    self._write(self._event(wall_time=time.time(), step=step, summary=self._summary(value=values)))
    self._f.flush()

  def close(self) -> None:
    self._f.close()


def read_metrics(workdir: str) -> list[dict]:
  """All rows of a run's metrics.jsonl."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
