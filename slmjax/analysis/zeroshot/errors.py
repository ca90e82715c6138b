"""Errors raised by the zero-shot evaluation: one line, naming what is wrong."""


class ZeroShotError(Exception):
    """Bad benchmark data, a tokenizer mismatch, or a run that cannot be scored."""

