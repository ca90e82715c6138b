"""Errors raised by the zero-shot evaluation: one line, naming what is wrong."""


class ZeroShotError(Exception):
    """Bad benchmark data, a tokenizer mismatch, or a run that cannot be scored."""


def one_line(e: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message`` (cut at ``limit`` characters; ``Type`` if none)."""
    lines = str(e).strip().splitlines()
    if not lines:
        return type(e).__name__
    text = lines[0] if len(lines[0]) <= limit else lines[0][:limit] + "..."
    return f"{type(e).__name__}: {text}"
