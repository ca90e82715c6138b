"""One-line descriptions of exceptions, for messages that wrap an error from below."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (cut to `limit` characters), or its type name
    when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


def describe(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message`` (just ``Type`` when the message is empty)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit]}" if lines else type(exc).__name__
