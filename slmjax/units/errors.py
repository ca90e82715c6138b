"""The one error class of the units stage (a single line naming what is wrong) and its helpers."""

import os


class UnitsError(Exception):
    """Bad input or configuration for speech-to-units; the message is one line for the user."""


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (just ``Type`` when the message is empty)."""
    text = str(exc).strip().split("\n")[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def make_dir(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``; a failure is one UnitsError."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UnitsError(f"{path} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UnitsError(f"cannot create directory {path}: {exc.strerror or describe(exc)}") from None
