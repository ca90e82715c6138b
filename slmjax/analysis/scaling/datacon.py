"""Data-constrained extension, second stage as in the paper: with E, A, B, alpha, beta fitted on the
single-epoch runs, fit R*_N and R*_D on the multi-epoch runs (Huber on log-loss, L-BFGS-B over
log R* from a grid of starts). A bootstrap replicate starts from the point fit's solution and from the
best grid starts on its own resample: where an R* is poorly constrained the objective is flat, and a
replicate started only from the point fit stays there although another minimum fits it better."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import optimize

from slmjax.analysis.scaling import laws

LOG_R_BOUNDS = (np.log(0.05), np.log(1e4))
START_GRID = list(itertools.product(np.log([1, 8, 60]), repeat=2))


def _huber(r, delta):
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def repeat_fit(N, D, U, L, stage1, w=None, delta=0.03, extra_starts=(), n_grid=None):
    """(R*_N, R*_D, objective) for multi-epoch runs given stage-1 parameters (E, A, B, alpha, beta).

    L-BFGS-B runs from ``extra_starts`` and the ``n_grid`` best points of START_GRID (None: all).
    """
    N, D, U, L = map(np.asarray, (N, D, U, L))
    w = np.ones(len(L)) if w is None else np.asarray(w, float)
    E, A, B, al, be = stage1
    logL = np.log(L)
    # Everything but R*_N, R*_D is fixed by stage 1: precompute the repeat counts once.
    R_D = np.maximum(D / U - 1.0, 0.0)
    U_N = np.minimum(N, laws.n_opt_for_data(U, A, B, al, be))
    R_N = np.maximum(N / U_N - 1.0, 0.0)

    def f(lr):
        pred = laws.chinchilla(laws.effective(U_N, R_N, np.exp(lr[0])), laws.effective(U, R_D, np.exp(lr[1])),
                               E, A, B, al, be)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.log(pred) - logL
        return float(_huber(np.where(np.isfinite(r), r, 1e3), delta) @ w)

    grid = START_GRID if n_grid is None else sorted(START_GRID, key=f)[:n_grid]
    best = None
    for s in [*extra_starts, *grid]:
        opt = optimize.minimize(f, np.asarray(s, float), method="L-BFGS-B", bounds=[LOG_R_BOUNDS] * 2,
                                options=dict(ftol=1e-15, gtol=1e-10, maxiter=2000))
        if best is None or opt.fun < best.fun:
            best = opt
    rn, rd = np.exp(best.x)
    at_bound = [n for n, x in zip(("R*_N", "R*_D"), best.x)
                if min(abs(x - LOG_R_BOUNDS[0]), abs(x - LOG_R_BOUNDS[1])) < 1e-6]
    return dict(rn=float(rn), rd=float(rd), objective=float(best.fun), at_bounds=at_bound)
