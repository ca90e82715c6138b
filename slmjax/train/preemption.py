"""SIGTERM (a preemption notice) and a first Ctrl-C as a flag the training loop checks between steps.

`install()` may run as early as the CLI's start, before JAX is imported: a notice that arrives
while the trainer starts (imports, joining a pod, reading data, restoring) is kept and honoured
when the loop begins, instead of killing the process. The first Ctrl-C (SIGINT) is such a notice
too (the run saves where it stands and ends `preempted`); a second one raises KeyboardInterrupt
at once, as Ctrl-C normally does.

With several JAX processes, `due(i)` stops them all after the same step: JAX's preemption service
(whose own SIGTERM handler replaces this one when `jax.distributed` starts) agrees on the step.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

_state = {"requested": False, "previous": None, "previous_int": None, "installed": False,
          "interrupts": 0, "forwarded": False}


def _handle(*_):
  _state["requested"] = True


def _handle_int(signum, frame):
  _state["interrupts"] += 1
  if _state["interrupts"] > 1:
    previous = _state["previous_int"]
    if callable(previous):
      previous(signum, frame)  # Python's default: KeyboardInterrupt
    raise KeyboardInterrupt
  _state["requested"] = True
  try:  # os.write: print() here could re-enter a stderr write (a progress bar) it interrupted
    os.write(sys.stderr.fileno(), b"\nslmjax-train: Ctrl-C: saving a checkpoint where the run "
             b"stands, then stopping; press Ctrl-C again to abort at once\n")
  except (OSError, ValueError, AttributeError):
    pass


def install() -> bool:
  """Turns SIGTERM and the first SIGINT into the flag; True when this call installed them
  (False: already, or not the main thread, where Python cannot install handlers). A SIGINT
  that the process ignores (e.g. started in the background) stays ignored."""
  if _state["installed"] or threading.current_thread() is not threading.main_thread():
    return False
  _state["previous"] = signal.signal(signal.SIGTERM, _handle)
  previous_int = signal.getsignal(signal.SIGINT)
  if previous_int not in (signal.SIG_IGN, None):
    _state["previous_int"] = signal.signal(signal.SIGINT, _handle_int)
  _state["installed"] = True
  return True


def requested() -> bool:
  return _state["requested"]


def due(i: int) -> bool:
  """Whether the run stops after the i-th step of this launch (0: before its first). Called once
  per step, with i counting up from 0, by every process alike.

  One process: its own notice. Several: each host gets its own notice at its own moment, so a
  process that stopped alone would leave the others waiting in a collective. The processes ask
  JAX's preemption service, which picks the same step for all; a notice only this handler saw
  (a Ctrl-C, or a SIGTERM before JAX started) is handed to that service as a SIGTERM.
  """
  import jax  # pylint: disable=g-import-not-at-top  # this module loads before JAX
  if jax.process_count() == 1:
    return requested()
  if requested() and not _state["forwarded"]:
    _state["forwarded"] = True
    os.kill(os.getpid(), signal.SIGTERM)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(multihost_utils.reached_preemption_sync_point(i))


def uninstall() -> None:
  """Puts the previous SIGTERM and SIGINT handlers back and clears the flag."""
  if _state["installed"]:
    signal.signal(signal.SIGTERM, _state["previous"])
    if _state["previous_int"] is not None:
      signal.signal(signal.SIGINT, _state["previous_int"])
  _state.update(requested=False, previous=None, previous_int=None, installed=False,
                interrupts=0, forwarded=False)
