"""Bootstrap over runs: seeded resampling weights, percentile intervals, a process pool for refits.

A replicate is a vector of resample counts over runs (whole runs are the unit; when the table has
IsoFLOP budget labels the resampling is stratified by budget so every profile keeps its size; the
multi-epoch runs of the second stage are a stratum of their own). Every
estimator takes these counts as weights, so all quantities of one replicate come from one resample
and their joint distribution is coherent (e.g. a from Approach 2 vs Approach 3).
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


def summarise(point, samples, level=0.95) -> dict:
    """{'value', 'lo', 'hi', 'median', 'se', 'n_ok', 'n'} from a point estimate and replicate values
    (n replicates, of which the n_ok finite ones give the interval)."""
    s = np.asarray(samples, float).ravel()
    n = int(s.size)
    s = s[np.isfinite(s)]
    q = (1 - level) / 2
    out = {"value": float(point) if point is not None else None, "n_ok": int(len(s)), "n": n}
    if len(s) >= 2:
        lo, med, hi = np.quantile(s, [q, 0.5, 1 - q])
        out.update(lo=float(lo), hi=float(hi), median=float(med), se=float(np.std(s, ddof=1)))
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
