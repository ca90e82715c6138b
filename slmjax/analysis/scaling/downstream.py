"""Downstream accuracy vs loss and vs compute (two-alternative tasks, chance 0.5).

- Linear in test loss (the paper, before saturation): acc = c0 + c1 L, weighted by n / (p (1 - p)).
- Sigmoid with a chance floor: acc = 0.5 + (c - 0.5) * sigmoid(k (L0 - L)).
- Envelope of best accuracy per FLOP (runs more accurate than every cheaper run), fitted as
  Q = q0 C^gamma in log-log; compared with a reference gamma (the paper's text rows by default) and
  inverted for the compute that reaches a target accuracy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy.special import expit

from slmjax.analysis.scaling import frontier
from slmjax.analysis.scaling.errors import FitInputError
from slmjax.analysis.scaling.table import csv_rows


def _binom_w(acc, n, w):
    p = np.clip(acc, 0.02, 0.98)
    nn = np.where(np.isfinite(n), n, 1.0)
    return w * nn / (p * (1 - p))


def linear_fit(L, acc, n, w):
    """Weighted least squares acc = c0 + c1 L: (c0, c1)."""
    ww = _binom_w(acc, n, w)
    X = np.stack([np.ones_like(L), L], 1) * np.sqrt(ww)[:, None]
    c, *_ = np.linalg.lstsq(X, acc * np.sqrt(ww), rcond=None)
    return float(c[0]), float(c[1])


def sigmoid(L, c, k, L0):
    return 0.5 + (c - 0.5) * expit(k * (L0 - L))


def sigmoid_fit(L, acc, n, w, x0=None):
    """Weighted least squares for (c, k, L0), c in [0.5, 1], k > 0."""
    sw = np.sqrt(_binom_w(acc, n, w))
    if x0 is None:
        x0 = (min(0.99, max(0.55, acc.max() + 0.05)), 2.0 / max(np.ptp(L), 1e-3), float(np.median(L)))
    lo, hi = ((CEILING_BOUNDS[0], 1e-3, L.min() - 10 * np.ptp(L) - 1),
              (CEILING_BOUNDS[1], 1e4, L.max() + 10 * np.ptp(L) + 1))
    x0 = np.clip(x0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    res = optimize.least_squares(lambda p: (sigmoid(L, *p) - acc) * sw, x0, bounds=(lo, hi),
                                 xtol=1e-10, ftol=1e-10, max_nfev=400)
    return tuple(float(v) for v in res.x)


CEILING_MIN_RISE = 0.5   # share of the fitted sigmoid's rise the observed losses must cover
CEILING_MIN_TOP = 3      # runs past the sigmoid's midpoint, where the ceiling is read
CEILING_BOUNDS = (0.5, 1.0)


def ceiling_support(L, k, L0):
    """(rise, top) of a fitted sigmoid over the runs' losses ``L``: the share of its rise (chance to
    ceiling) between the highest and the lowest loss, expit(k (L0 - min L)) - expit(k (L0 - max L)),
    and the number of runs past its midpoint (L < L0)."""
    L = np.asarray(L, float)
    return float(expit(k * (L0 - L.min())) - expit(k * (L0 - L.max()))), int(np.sum(L < L0))


def ceiling_identified(rise, top, rep_rise, rep_top):
    """(identified, the one line that says why not, or None) for the sigmoid ceiling c, from the
    point fit's ceiling_support and its bootstrap replicates'.

    The fit is acc - 0.5 = (c - 0.5) s(L), s = sigmoid(k (L0 - L)), and the data fix c only where
    they show s's bend and the runs past it:
    - the observed losses cover at least half of s's rise (rise >= CEILING_MIN_RISE = 0.5), so its
      midpoint L0 lies among them and c - 0.5 is at most twice the fitted rise above chance at the
      lowest loss. With less, the runs see a nearly straight or flat stretch of the curve, a higher
      c with a flatter or more distant sigmoid fits them as well, and c is wherever the optimizer's
      bounds and start leave it (k at its lower bound, L0 at its upper one);
    - at least CEILING_MIN_TOP = 3 runs lie past the midpoint (L < L0), as the module asks 3 runs of
      every fit. With fewer, c is the accuracy of one or two runs beyond a step, and a bootstrap
      over runs cannot see their own binomial noise: a task with two runs barely above chance
      printed 0.572 [0.572, 0.572], k at its upper bound in every replicate;
    - both hold for at least half of the fitted replicates: a point fit that meets them while most
      resamples of the runs do not does so by the luck of the sample. (Replicates in the tail that
      do not stay in the percentile interval, which then reaches toward the bound 1 by itself.)
    When c is not identified the caller reports its interval as the bounds CEILING_BOUNDS.
    """
    r, t = np.asarray(rep_rise, float), np.asarray(rep_top, float)
    fitted = np.isfinite(r)
    good = int(np.sum((r[fitted] >= CEILING_MIN_RISE) & (t[fitted] >= CEILING_MIN_TOP)))
    if rise >= CEILING_MIN_RISE and top >= CEILING_MIN_TOP and 2 * good >= fitted.sum():
        return True, None
    return False, (f"ceiling not identified: the observed losses cover {100 * rise:.0f}% of the fitted sigmoid's "
                   f"rise with {top} run(s) past its midpoint; {good} of {int(fitted.sum())} replicates cover "
                   f"{100 * CEILING_MIN_RISE:.0f}% or more with {CEILING_MIN_TOP} or more runs past it (both needed, in "
                   f"the fit and in half of the replicates); its interval is the bounds "
                   f"[{CEILING_BOUNDS[0]:g}, {CEILING_BOUNDS[1]:g}]")


def wilson_lo(acc, n, z=1.959963984540054):
    """Lower end of the Wilson score interval of an accuracy on n items (the accuracy itself where n
    is unknown)."""
    acc, n = np.asarray(acc, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = (acc + z * z / (2 * n) - z * np.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    return np.where(np.isfinite(n) & (n > 0), lo, acc)


def at_chance(acc, n):
    """None if some run beats chance (0.5) by its Wilson interval at 95% over all the task's runs
    together (Bonferroni: of 40 runs at chance, one beats chance at 95% alone in 2 tables of 3), else
    the one line that says none does: then accuracy has not begun to rise with compute, and its
    envelope, gamma, sigmoid ceiling and compute to a target would be fitted to noise around 0.5."""
    from scipy.stats import norm
    ok = np.isfinite(acc)
    lo = wilson_lo(acc[ok], n[ok], z=float(norm.isf(0.025 / max(1, ok.sum()))))
    if np.any(lo > 0.5):
        return None
    i = int(np.argmax(acc[ok]))
    nn = n[ok][i]
    items = f" of {nn:.0f} items" if np.isfinite(nn) and nn > 0 else ""
    return (f"no run above chance (0.5) by a 95% interval over the {int(ok.sum())} runs (best {100 * acc[ok][i]:.1f}%{items}); "
            "accuracy does not yet rise with compute, so no envelope, gamma, sigmoid or compute to target")


def acc_envelope(C, acc, w):
    """Indices of runs more accurate than every run of no more compute (in order of compute):
    frontier.front, which treats compute equal to within float rounding as equal and takes runs at
    equal compute best first. Bootstrap counts only matter as drawn or not (w > 0), so gamma_fit's
    line through the envelope is that of the table with each row repeated w times.
    """
    return frontier.front(C, acc, w)


def gamma_fit(C, acc, w):
    """(gamma, log q0) of Q = q0 C^gamma on the accuracy envelope; NaNs with < 3 envelope points."""
    f = acc_envelope(C, acc, w)
    if len(f) < 3:
        return np.nan, np.nan, f
    g, lq = np.polyfit(np.log(C[f]), np.log(acc[f]), 1)
    return float(g), float(lq), f


def compute_for(target, gamma, log_q0):
    """Compute C where q0 C^gamma reaches ``target`` accuracy."""
    if not (gamma > 0):
        return np.nan
    return float(np.exp((np.log(target) - log_q0) / gamma))


def task_fit(L, C, acc, n, w=None, sig=True, x0=None):
    """All downstream quantities of one task for one set of run weights (dict of floats).

    ``w``: bootstrap resample counts. The linear and sigmoid fits are least squares with the counts
    in their weights (the fit on the table with each row repeated w times); the rows with w = 0 are
    dropped first, and fewer than 3 distinct runs drawn is no fit. ``sig_rise``, ``sig_top``:
    ceiling_support over the drawn runs (ceiling_identified). gamma: see acc_envelope.
    """
    ok = np.isfinite(acc)
    w = (np.ones(len(L)) if w is None else np.asarray(w, float)) * ok
    a = np.where(ok, acc, 0.5)
    out = dict(c0=np.nan, c1=np.nan, sig_c=np.nan, sig_k=np.nan, sig_L0=np.nan, sig_rise=np.nan,
               sig_top=np.nan, gamma=np.nan, log_q0=np.nan)
    if np.count_nonzero(w) < 3:
        return out, np.array([], int)
    sel = w > 0
    out["c0"], out["c1"] = linear_fit(L[sel], a[sel], n[sel], w[sel])
    if sig:
        try:
            out["sig_c"], out["sig_k"], out["sig_L0"] = sigmoid_fit(L[sel], a[sel], n[sel], w[sel], x0)
            out["sig_rise"], out["sig_top"] = ceiling_support(L[sel], out["sig_k"], out["sig_L0"])
        except (ValueError, np.linalg.LinAlgError):
            pass
    out["gamma"], out["log_q0"], front = gamma_fit(C, a, w)
    return out, front


def read_reference(path: str | None):
    """Reference gammas: {label: {task: gamma}}. ``None`` -> the paper's text and speech rows."""
    from slmjax.analysis.scaling.laws import PAPER_GAMMA
    if path is None:
        return {k: dict(v) for k, v in PAPER_GAMMA.items()}
    rows = csv_rows(path, "reference table")[1]
    # Hand-edited tables pad names and cells with spaces: ' gamma' is gamma.
    rows = [{k.strip().lower(): v.strip() if isinstance(v, str) else v for k, v in r.items() if k is not None}
            for r in rows]
    if rows and not {"task", "gamma"} <= set(rows[0]):
        raise FitInputError(f"{path}: reference table needs columns task,gamma (optional label)")
    if not rows:
        raise FitInputError(f"{path}: reference table has no rows (columns task,gamma, optional label)")
    ref = {}
    for i, r in enumerate(rows, 1):
        task, raw = r.get("task") or "", r.get("gamma")
        if not task or raw in (None, ""):
            raise FitInputError(f"{path}: row {i} of the reference table has no {'gamma' if task else 'task'}")
        try:
            g = float(raw)
        except (TypeError, ValueError):
            raise FitInputError(f"{path}: gamma {raw!r} for task {task} is not a number") from None
        if not math.isfinite(g):
            raise FitInputError(f"{path}: gamma {raw!r} for task {task} is not a finite number")
        ref.setdefault(r.get("label") or "reference", {})[task.lower()] = g
    return ref
