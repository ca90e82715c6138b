"""Approach 3 point fits and their bootstraps (both objectives), plus the allocation they imply."""

from __future__ import annotations

import numpy as np

from slmjax.analysis.scaling import bootstrap as bs
from slmjax.analysis.scaling import huber, laws, vpfit

PARAMS = ("E", "A", "B", "alpha", "beta")


def _vp_chunk(args):
    logN, logD, L, W, grid, zooms = args
    r = vpfit.vp_fit(logN, logD, L, weights=W, grid=grid, zooms=zooms, polish=False)
    return r.params


def vp_bootstrap(logN, logD, L, W, workers, grid=vpfit.BOOT_GRID, zooms=6, chunk=50):
    """(R, 5) parameters of the variable-projection fit on each weight row.

    Replicates search a coarser (alpha, beta) grid than the point fit, then zoom one level more; on
    simulated tables their residual sums agree with the dense search to 0.03%.
    """
    jobs = [(logN, logD, L, W[a:b], grid, zooms) for a, b in bs.chunks(len(W), chunk)]
    parts = bs.pmap(_vp_chunk, jobs,
                    workers, desc="bootstrap (variable projection)")
    return np.concatenate(parts) if parts else np.zeros((0, 5))


def _huber_chunk(args):
    logN, logD, L, W, starts, delta = args
    out = []
    for w, extra in zip(W, starts):
        r = huber.huber_fit(logN, logD, L, w=w, delta=delta, grid=False, extra_starts=extra)
        out.append(r.params)
    return np.array(out)


def huber_bootstrap(logN, logD, L, W, point_theta, vp_params, delta, workers, chunk=25):
    """(R, 5) Huber-objective parameters per weight row, started from the point fit and the row's VP fit."""
    starts = [[point_theta, huber.to_theta(p)] for p in vp_params]
    jobs = [(logN, logD, L, W[a:b], starts[a:b], delta) for a, b in bs.chunks(len(W), chunk)]
    parts = bs.pmap(_huber_chunk, jobs, workers, desc="bootstrap (Huber objective)")
    return np.concatenate(parts) if parts else np.zeros((0, 5))


def derived(P, C_points):
    """Allocation quantities for parameter rows P (R, 5): dict name -> (R,) or (R, len(C))."""
    P = np.atleast_2d(P)
    E, A, B, al, be = P.T
    with np.errstate(all="ignore"):
        alloc = laws.allocation(E, A, B, al, be)
        C = np.asarray(C_points, float)[None]
        N = laws.n_opt(C, A[:, None], B[:, None], al[:, None], be[:, None])
        D = laws.d_opt(C, A[:, None], B[:, None], al[:, None], be[:, None])
        Lopt = laws.chinchilla(N, D, E[:, None], A[:, None], B[:, None], al[:, None], be[:, None])
    return dict(a=alloc["a"], b=alloc["b"], G=alloc["G"], N_opt=N, D_opt=D, tokens_per_param=D / N, L_opt=Lopt)


def summarise_fit(point, boot, C_points, level):
    """JSON-ready summary of parameters and allocation at each compute in ``C_points``."""
    out = {"params": {k: bs.summarise(point[i], boot[:, i], level) for i, k in enumerate(PARAMS)}}
    dp, db = derived(point, C_points), derived(boot, C_points)
    out["allocation"] = {k: bs.summarise(dp[k][0], db[k], level) for k in ("a", "b", "G")}
    out["at_compute"] = [
        {"C": float(c), **{k: bs.summarise(dp[k][0, j], db[k][:, j], level)
                           for k in ("N_opt", "D_opt", "tokens_per_param", "L_opt")}}
        for j, c in enumerate(C_points)]
    return out


def bands(point, boot, C_grid, level):
    """Point curves and percentile bands of N*(C), D*(C), L*(C) over ``C_grid`` (for plots): the
    percentiles of ``bs.summarise``, so a band reaches +inf (D*(C) where replicates have A = 0) or 0."""
    dp, db = derived(point, C_grid), derived(boot, C_grid)
    q = (1 - level) / 2
    out = {}
    for k in ("N_opt", "D_opt", "L_opt"):
        lo, hi = bs.quantiles(db[k], [q, 1 - q])
        out[k] = dict(value=dp[k][0].tolist(), lo=lo.tolist(), hi=hi.tolist())
    return out
