"""Bootstrap over runs: seeded resampling weights, percentile intervals, a process pool for refits.

A replicate is a vector of resample counts over runs (whole runs are the unit; when the table has
IsoFLOP budget labels the resampling is stratified by budget so every profile keeps its size; the
multi-epoch runs of the second stage are a stratum of their own). Every
estimator takes these counts as weights, so all quantities of one replicate come from one resample
and their joint distribution is coherent (e.g. a from Approach 2 vs Approach 3).

Failed and infinite replicates. A replicate value of NaN (or None) is a failed replicate and is left
out of its summary. An infinite value is an answer, not a failure: when NNLS sets a Chinchilla law's
A = 0 that replicate's D*(C) and tokens per parameter are +inf (and N*(C) is 0; B = 0 the other way
round), so dropping it would pull the upper limits down. ``summarise`` keeps +-inf as ordered
values: its percentiles are order-statistic interpolations (NumPy's default "linear" method, bit for
bit on finite values) in which a quantile whose two neighbouring order statistics are finite is
finite, and one that interpolates towards an infinite neighbour is that infinity (one lying strictly
between a -inf and a +inf neighbour is undefined: NaN). Its 'se' is the standard deviation of the
replicates when all are finite and None when any is infinite; 'n_ok' counts the non-NaN replicates
and 'n_inf' the infinite ones among them.

In fit.json (JSON has no infinity) an infinite number is written as the string "inf" or "-inf" and
NaN as null, so the file stays standard JSON (``json.dumps(..., allow_nan=False)``); ``float()``
reads either string back, and ``fitjson.load_fit`` returns the summaries with floats again.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm


def resample_weights(n: int, reps: int, seed: int, strata=None) -> np.ndarray:
    """(reps, n) resample counts; ``strata`` (labels, NaN = its own stratum) resamples within each."""
    rng = np.random.default_rng(seed)
    W = np.zeros((reps, n))
    if strata is None:
        groups = [np.arange(n)]
    else:
        s = np.asarray(strata, float)
        lab = np.where(np.isfinite(s), s, -1.0)
        groups = [np.nonzero(lab == u)[0] for u in np.unique(lab)]
    for g in groups:
        W[:, g] = rng.multinomial(len(g), np.full(len(g), 1.0 / len(g)), size=reps)
    return W


def quantiles(samples, qs):
    """Percentiles of replicate values along axis 0, NaN dropped (per column), +-inf kept in order.

    ``samples`` (R,) or (R, K); returns (len(qs),) or (len(qs), K). Linear interpolation between
    the order statistics x[i], x[i + 1] at position (n - 1) q, as ``np.quantile`` does (and with the
    same arithmetic, so finite data give the same bits); unlike it, a position with an infinite
    neighbour it interpolates towards gives that infinity (np.quantile gives NaN for inf - inf and
    for inf * 0), and a position on an order statistic exactly gives it. NaN where a column has no
    non-NaN value or the position lies strictly between -inf and +inf.
    """
    x = np.asarray(samples, float)
    one = x.ndim == 1
    x = x[:, None] if one else x
    if len(x) == 0:
        out = np.full((len(np.atleast_1d(qs)), x.shape[1]), np.nan)
        return out[:, 0] if one else out
    x = np.sort(x, axis=0)                             # NaN sort last
    n = (~np.isnan(x)).sum(axis=0)
    top = np.maximum(n - 1, 0)
    out = []
    for q in np.atleast_1d(np.asarray(qs, float)):
        h = top * q
        i = np.clip(np.floor(h).astype(int), 0, top)
        j = np.minimum(i + 1, top)
        t = h - i
        a = np.take_along_axis(x, i[None], 0)[0]
        b = np.take_along_axis(x, j[None], 0)[0]
        with np.errstate(invalid="ignore"):
            d = b - a
            v = np.where(t >= 0.5, b - d * (1 - t), a + d * t)
        inf_a, inf_b = np.isinf(a), np.isinf(b)
        v = np.where(inf_b & ~inf_a, b, v)                 # towards +inf (t > 0 here: else a == b below)
        v = np.where(inf_a & ~inf_b, a, v)                 # away from -inf
        v = np.where(inf_a & inf_b & (a != b), np.nan, v)  # between -inf and +inf
        v = np.where((t == 0) | (a == b), a, v)            # on an order statistic (inf == inf too)
        out.append(np.where(n > 0, v, np.nan))
    out = np.array(out)
    return out[:, 0] if one else out


def summarise(point, samples, level=0.95) -> dict:
    """{'value', 'lo', 'hi', 'median', 'se', 'n_ok', 'n_inf', 'n'} from a point estimate and replicate
    values: n replicates, of which the n_ok non-NaN ones (n_inf of them infinite) give the interval
    and median (module docstring); 'se' is None when any of them is infinite."""
    s = np.asarray(samples, float).ravel()
    n = int(s.size)
    s = s[~np.isnan(s)]
    n_inf = int(np.isinf(s).sum())
    q = (1 - level) / 2
    out = {"value": float(point) if point is not None else None, "n_ok": int(len(s)), "n_inf": n_inf, "n": n}
    if len(s) >= 2:
        lo, med, hi = quantiles(s, [q, 0.5, 1 - q])
        out.update(lo=float(lo), hi=float(hi), median=float(med),
                   se=float(np.std(s, ddof=1)) if n_inf == 0 else None)
    else:
        out.update(lo=None, hi=None, median=None, se=None)
    return out


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _one_thread(fn, x):
    # Many small BLAS calls per task: extra BLAS threads only contend with the pool's processes.
    with threadpool_limits(1):
        return fn(x)


def pmap(fn, items, workers: int, desc: str | None = None):
    """Map ``fn`` over ``items`` in a fork-based process pool (serial when workers <= 1), in order."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        # The pool pickles each item, which lays a strided array (a column selection) out
        # C-contiguous, and the BLAS then sums in another order: so here too, so that results do
        # not depend on the worker count.
        return [_one_thread(fn, pickle.loads(ForkingPickler.dumps(x)))
                for x in tqdm(items, desc=desc, disable=desc is None, leave=False)]
    ctx = mp.get_context("fork")
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=ctx) as ex:
        futs = [ex.submit(_one_thread, fn, x) for x in items]
        for _ in tqdm(cf.as_completed(futs), total=len(futs), desc=desc, disable=desc is None, leave=False):
            pass
        return [f.result() for f in futs]


def chunks(n: int, size: int):
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _rows_job(args):
    fn, common, rows = args
    return [fn(common, r) for r in rows]


def map_rows(fn, rows, common, workers: int, desc: str | None = None, chunk: int = 50):
    """``[fn(common, row) for row in rows]`` in chunks over the process pool."""
    rows = list(rows)
    parts = pmap(_rows_job, [(fn, common, rows[a:b]) for a, b in chunks(len(rows), chunk)], workers, desc)
    return [r for p in parts for r in p]
