"""Approach 2 (IsoFLOP parabolas) and Approach 1 (lower envelope of loss vs compute, Kaplan L(C)).

IsoFLOP profiles come from the table's budget groups when it has them (runs planned at one FLOP
budget); otherwise they are built by interpolating each model size's loss linearly in log D between
its own finished runs (every run's schedule ends at its D, so each point is a real run) at a set of
compute levels reached by at least three sizes; a size's D at level C is C over its FLOPs per token
under the compute convention given (6N, 6N + attention, ...). A parabola of loss in log N per profile gives N*(C);
a line through log N* vs log C gives the exponent a (and b = 1 - a under C = 6 N D).
"""

from __future__ import annotations

import numpy as np

from slmjax.analysis.scaling import frontier


def _groups(C, budget, w):
    """[(C level, run indices)] from budget labels (only runs with positive weight)."""
    out = []
    for lab in np.unique(budget[np.isfinite(budget)]):
        idx = np.nonzero((budget == lab) & (w > 0))[0]
        if len(idx):
            out.append((float(np.exp(np.average(np.log(C[idx]), weights=w[idx]))), idx))
    return out


def _interpolated(N, D, L, C, w, levels=30):
    """[(C level, N per size, L per size)] by log-linear interpolation along each size's budgets.

    Bootstrap counts: a run drawn k times is one knot of its size's curve whatever k is (the
    duplicated table has k equal knots, and interpolating through them gives the same curve), and
    the profile points are interpolated values, not runs, so they carry no weight. Only the averages
    over a size's runs (its N and FLOPs per token, which differ between runs where a flops column
    is measured) count a run k times, so that weights w give the fit on the table with each row
    repeated w times.
    """
    keep = w > 0
    sizes = np.unique(np.round(np.log(N[keep]), 2))
    per = []
    for s in sizes:
        idx = np.nonzero(keep & (np.round(np.log(N), 2) == s))[0]
        idx = idx[np.argsort(D[idx])]
        logd = np.log(D[idx])
        if len(np.unique(logd)) >= 2:
            # FLOPs per token of this size under the table's convention (6N, 6N + attention, ...).
            per.append((float(np.exp(np.average(np.log(N[idx]), weights=w[idx]))),
                        float(np.average(np.log(C[idx] / D[idx]), weights=w[idx])), logd, L[idx]))
    if len(per) < 3:
        return []
    lo, hi = np.log(C[keep]).min(), np.log(C[keep]).max()
    out = []
    for lc in np.linspace(lo, hi, levels):
        ns, ls = [], []
        for n, log_fpt, logd, l in per:
            x = lc - log_fpt
            if logd[0] - 1e-9 <= x <= logd[-1] + 1e-9:
                ns.append(n)
                ls.append(np.interp(x, logd, l))
        if len(ns) >= 3:
            out.append((float(np.exp(lc)), np.array(ns), np.array(ls)))
    return out


def isoflop_fit(N, D, L, C, budget=None, w=None, min_points=3):
    """Approach 2. Returns a, b, k (N* = k C^a), profiles, or ``None`` if fewer than 2 usable profiles.

    ``w``: bootstrap resample counts. With budget labels a profile's parabola is least squares with
    the counts as weights (np.polyfit's w multiplies the unsquared residual, hence sqrt) and its C a
    count-weighted geometric mean: the fit on the table with each row repeated w times.
    """
    N, D, L, C = map(np.asarray, (N, D, L, C))
    w = np.ones(len(L)) if w is None else np.asarray(w, float)
    profiles = []
    grouped = budget is not None and np.isfinite(budget).sum() >= 3
    if grouped:
        raw = [(c, N[i], L[i], w[i], i.tolist()) for c, i in _groups(C, np.asarray(budget), w)]
    else:
        raw = [(c, n, l, np.ones(len(n)), None) for c, n, l in _interpolated(N, D, L, C, w)]
    for c, n, l, ww, idx in raw:
        if _sizes(n) < min_points:
            continue
        x = np.log(n)
        xc = x.mean()
        p2, p1, p0 = np.polyfit(x - xc, l, 2, w=np.sqrt(ww))
        ok = p2 > 0
        xs = xc - p1 / (2 * p2) if ok else np.nan
        inside = bool(ok and x.min() <= xs <= x.max())
        profiles.append(dict(C=c, N_opt=float(np.exp(xs)) if ok else np.nan,
                             L_min=float(p0 - p1 * p1 / (4 * p2)) if ok else np.nan,
                             coef=(float(p2), float(p1), float(p0)), x_center=float(xc),
                             inside=inside, n_points=len(x), runs=idx))
    use = [p for p in profiles if p["inside"]]
    if len(use) < 2:
        return None if not profiles else dict(a=np.nan, b=np.nan, k=np.nan, profiles=profiles,
                                               grouped=grouped, n_used=len(use))
    lc = np.log([p["C"] for p in use])
    ln = np.log([p["N_opt"] for p in use])
    a, logk = np.polyfit(lc, ln, 1)
    return dict(a=float(a), b=float(1.0 - a), k=float(np.exp(logk)), profiles=profiles,
                grouped=grouped, n_used=len(use))


def _sizes(N):
    """Distinct model sizes among ``N``: the points a profile's parabola has."""
    return len(np.unique(np.round(np.log(N), 4)))


def skip_reason(N, D, budget, result, min_points=3):
    """The one line that says why ``isoflop_fit`` gave no exponent (its ``result``: None or a dict
    with fewer than 2 usable profiles): how many profiles had the 3 model sizes a parabola needs,
    which (their compute), and what is missing; or, when there were 2 or more, how many of them had
    a minimum inside their sampled sizes, which is what bracketing the optimum means."""
    N, D = np.asarray(N), np.asarray(D)
    grouped = budget is not None and np.isfinite(budget).sum() >= 3
    if grouped:
        budget = np.asarray(budget, float)
        labels = np.unique(budget[np.isfinite(budget)])
        n_sizes = [_sizes(N[budget == b]) for b in labels]
        full = [float(b) for b, k in zip(labels, n_sizes) if k >= min_points]
        what = (f"{len(full)} of the {len(labels)} IsoFLOP budgets ha{'s' if len(full) == 1 else 've'} runs of "
                f"{min_points} or more model sizes" + (f" (C = {', '.join(f'{b:.3g}' for b in full)})" if full else ""))
        if len(full) < 2:
            return (f"{what}; a parabola per budget needs runs of {min_points} sizes and the power law N*(C) "
                    f"needs 2 such budgets (sizes per budget: "
                    + ", ".join(f"C = {b:.3g}: {k}" for b, k in zip(labels, n_sizes)) + ")")
    else:
        size = np.round(np.log(N), 2)   # as _interpolated groups sizes
        per = [np.unique(np.log(D[size == s])).size for s in np.unique(size)]
        ok = sum(k >= 2 for k in per)
        if ok < 3 or not result or len(result["profiles"]) < 2:
            prof = len(result["profiles"]) if result else 0
            return (f"no IsoFLOP budgets in the table, and {ok} of its {len(per)} model sizes have runs at 2 or "
                    f"more token counts, reaching {prof} common compute level(s); interpolated profiles need "
                    f"{min_points} such sizes at one compute level, at 2 or more levels")
        what = f"{len(result['profiles'])} interpolated IsoFLOP profiles"
    profs = result["profiles"]
    inside = [p for p in profs if p["inside"]]
    where = ", ".join(f"{p['C']:.3g}" for p in inside)
    return (f"{what}, but only {len(inside)} with a minimum inside their sampled sizes"
            + (f" (C = {where})" if inside else "")
            + "; the power law N*(C) needs 2 (the grid does not bracket the optimum at the others)")


def envelope(C, L, w=None):
    """Indices of the lower envelope (Pareto front) of loss vs compute, in order of compute:
    frontier.front on -L, which treats compute equal to within float rounding as equal and takes
    runs at equal compute lowest loss first. Only whether a run was drawn matters (w > 0), so
    kaplan_fit's lines through the front are those of the table with each row repeated w times.
    """
    return frontier.front(C, -np.asarray(L, float), w)


def kaplan_fit(N, C, L, w=None):
    """Approach 1: L = (C_c / C)^gamma on the envelope; also N on the envelope ~ C^a_env."""
    N, C, L = map(np.asarray, (N, C, L))
    front = envelope(C, L, w)
    if len(front) < 3:
        return None
    slope, icpt = np.polyfit(np.log(C[front]), np.log(L[front]), 1)
    gamma = -slope
    out = dict(gamma=float(gamma), C_c=float(np.exp(icpt / gamma)) if gamma > 0 else np.nan,
               log_k=float(icpt), envelope=front.tolist(), a_env=np.nan)
    if len(np.unique(np.round(np.log(N[front]), 3))) >= 3:
        out["a_env"] = float(np.polyfit(np.log(C[front]), np.log(N[front]), 1)[0])
    return out
