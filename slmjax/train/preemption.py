"""SIGTERM (a preemption notice) as a flag the training loop checks between steps.

`install()` may run as early as the CLI's start, before JAX is imported: a notice that arrives
while the trainer starts (imports, joining a pod, reading data, restoring) is kept and honoured
when the loop begins, instead of killing the process.
"""

from __future__ import annotations

import signal
import threading

_state = {"requested": False, "previous": None, "installed": False}


def _handle(*_):
  _state["requested"] = True


def install() -> bool:
  """Turns SIGTERM into the flag; True when this call installed it (False: already, or not
  the main thread, where Python cannot install handlers)."""
  if _state["installed"] or threading.current_thread() is not threading.main_thread():
    return False
  _state["previous"] = signal.signal(signal.SIGTERM, _handle)
  _state["installed"] = True
  return True


def requested() -> bool:
  return _state["requested"]


def uninstall() -> None:
  """Puts the previous SIGTERM handler back and clears the flag."""
  if _state["installed"]:
    signal.signal(signal.SIGTERM, _state["previous"])
  _state.update(requested=False, previous=None, installed=False)
