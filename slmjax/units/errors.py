"""The one error class of the units stage (a single line naming what is wrong) and its helpers."""

import os

from slmjax.errortext import describe


class UnitsError(Exception):
    """Bad input or configuration for speech-to-units; the message is one line for the user."""


def make_dir(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``; a failure is one UnitsError."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UnitsError(f"{path} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UnitsError(f"cannot create directory {path}: {exc.strerror or describe(exc)}") from None
