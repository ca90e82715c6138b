"""Fronts over compute: the runs that beat every run of no more compute (the accuracy envelope of
downstream gamma, the loss envelope of Kaplan's L(C)). Both are built here, by ``front``.

Compute values equal to within a relative ``COMPUTE_RTOL`` = 1e-9 are one compute: 6*N*D evaluated
in another order, or C read back from a CSV written with 10 or more significant digits, differs
from the same C by float rounding (a few ulp, ~1e-16 relative, up to 5e-10 for 10 digits), and
without the tolerance a worse run whose C came out 1 ulp lower than a better run's would stay on
the front as "cheaper". 1e-9 is six orders of magnitude above float64 rounding and below any real
difference in compute between two runs (one token of a run of 1e9 tokens), so no two distinct
budgets are merged. A table whose C was written with 6 significant digits (%g) differs by up to
5e-6 and is not covered: write C with more digits, or let the tools compute it (6ND).
"""

from __future__ import annotations

import numpy as np

COMPUTE_RTOL = 1e-9


def compute_levels(C, rtol=COMPUTE_RTOL):
    """Integer level per run, increasing with compute; runs within ``rtol`` of a level's smallest C
    share it. Levels are anchored at the smallest C of each (not chained run to run), so runs
    spaced just under rtol apart do not merge into one level however many there are."""
    C = np.asarray(C, float)
    lev = np.empty(len(C), int)
    k, start = -1, None
    for i in np.argsort(C, kind="stable"):
        if start is None or C[i] - start > rtol * abs(start):
            k, start = k + 1, C[i]
        lev[i] = k
    return lev


def front(C, score, w=None):
    """Indices of the runs (w > 0) whose score is strictly higher than that of every run drawn at
    lower or equal compute, in order of compute; runs at equal compute (compute_levels) are taken
    best first, so only the best of them can be on the front.

    Only whether a run was drawn matters (w > 0), not how often: a copy of a run never strictly
    beats itself, so the table with each row repeated w times has the same front, each run on it once.
    """
    score = np.asarray(score, float)
    w = np.ones(len(score)) if w is None else np.asarray(w)
    out, best = [], -np.inf
    for i in np.lexsort((-score, compute_levels(C))):
        if w[i] > 0 and score[i] > best:
            out.append(i)
            best = score[i]
    return np.array(out, int)
