"""fit.json: standard JSON (no NaN or Infinity tokens). An infinite number (e.g. a D*(C) upper limit
when bootstrap replicates have A = 0) is the string "inf" or "-inf", NaN is null; ``load_fit`` reads
the file back with the bootstrap summaries' numbers as floats again. No flags here: the demo's
report reads fit.json in a process that defines its own.
"""

from __future__ import annotations

import json
import math

import numpy as np


def clean(x):
    """JSON-safe: NumPy scalars to Python, NaN to null, +-inf to the strings "inf" / "-inf"."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [clean(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.bool_):
        return bool(x)
    return x


SUMMARY_NUMBERS = ("value", "lo", "hi", "median", "se")


def unclean(x):
    """Inverse of ``clean`` on bootstrap summaries (dicts with 'n_ok'): "inf" / "-inf" to floats."""
    if isinstance(x, list):
        return [unclean(v) for v in x]
    if not isinstance(x, dict):
        return x
    summary = "n_ok" in x and "n" in x
    return {k: float(v) if summary and k in SUMMARY_NUMBERS and v in ("inf", "-inf") else unclean(v)
            for k, v in x.items()}


def dumps_fit(res) -> str:
    """fit.json's text: standard JSON (no NaN or Infinity tokens)."""
    return json.dumps(clean(res), indent=1, allow_nan=False)


def load_fit(path):
    """fit.json as written by slmjax-fit, its bootstrap summaries' infinite limits as float +-inf."""
    with open(path) as f:
        return unclean(json.load(f))
