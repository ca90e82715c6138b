"""Command-line plumbing shared by the benchmarks: a bad argument is one line on stderr (exit 2).

    app.run(main, flags_parser=benchcli.parse_flags)
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from absl import flags


def fail(message: str) -> NoReturn:
    """Print each line of ``message`` after the script's name on stderr and exit with status 2."""
    prog = os.path.basename(sys.argv[0])
    for line in message.strip().splitlines() or ["failed"]:
        print(f"{prog}: {line}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing (for ``app.run(flags_parser=...)``) with an error as one line, not absl's
    two-line notice. A --config file's error is the last line of absl's message."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        fail(lines[-1] if lines else type(e).__name__)


def choices(name: str, allowed: tuple[str, ...], required: bool = False) -> None:
    """Register a validator: every item of the list flag ``name`` is one of ``allowed`` (and there
    is at least one when ``required``)."""
    flags.register_validator(
        name, lambda items: set(items) <= set(allowed) and (bool(items) or not required),
        message=f"--{name} takes {'one or more' if required else 'items'} of: {', '.join(allowed)}")


def positive(name: str) -> None:
    """Register a validator: the number flag ``name`` is > 0."""
    flags.register_validator(name, lambda x: x > 0, message=f"--{name} must be > 0")
