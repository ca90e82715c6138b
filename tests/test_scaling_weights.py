"""Bootstrap weights are resample counts: a refit on weights w must equal the fit on the table with
each run repeated w times. Checked against references computed here in float64 on the explicitly
duplicated rows."""

import numpy as np
import pytest

from slmjax.analysis.scaling import bootstrap as bs
from slmjax.analysis.scaling import downstream, isoflop, laws, simulate

SPEECH = {k: v for k, v in laws.PAPER_LAWS["speech"].items() if k not in ("rn", "rd")}


def _dup(w, *cols):
    r = np.repeat(np.arange(len(w)), np.asarray(w).astype(int))
    return [np.asarray(c)[r] for c in cols]


def _interpolated_a(N, D, L, C, levels=30):
    """Approach 2 without budget labels, written out on an unweighted table: per size, FLOPs per
    token is the mean of log(C / D) over its rows, loss is interpolated linearly in log D between its
    distinct D; a parabola in log N per compute level (>= 3 sizes) and a line through log N* vs log C."""
    per = []
    for n in np.unique(N):
        i = N == n
        d, first = np.unique(D[i], return_index=True)   # repeated rows of one run: one knot
        if len(d) >= 2:
            per.append((n, np.mean(np.log(C[i] / D[i])), np.log(d), L[i][first]))
    lcs, lns = [], []
    for lc in np.linspace(np.log(C).min(), np.log(C).max(), levels):
        x, y = [], []
        for n, fpt, logd, l in per:
            if logd[0] - 1e-9 <= lc - fpt <= logd[-1] + 1e-9:
                x.append(np.log(n))
                y.append(np.interp(lc - fpt, logd, l))
        if len(x) >= 3:
            p2, p1, _ = np.polyfit(x, y, 2)
            xs = -p1 / (2 * p2)
            if p2 > 0 and min(x) <= xs <= max(x):
                lcs.append(lc)
                lns.append(xs)
    return np.polyfit(lcs, lns, 1)[0]


def test_interpolated_isoflop_fit_counts_a_run_drawn_k_times_k_times():
    """Interpolated profiles do not depend on how often a run was drawn (its knot is the same), but
    each size's FLOPs per token is an average over its runs: when the table's flops column varies
    between the runs of a size, a run drawn twice must count twice there. It counted once (plain
    mean over the drawn runs): replicate a differed from the duplicated table's by up to 0.05."""
    rows = simulate.simulate_rows(law=SPEECH, noise=0.005, seed=3, sizes=np.geomspace(1e6, 1e9, 7),
                                  ratios=np.geomspace(2, 5000, 14))
    N, D, L = (np.array([r[k] for r in rows], float) for k in ("n_params", "tokens", "test_loss"))
    rng = np.random.default_rng(1)
    C = np.array([r["flops"] for r in rows]) * (1 + rng.uniform(-0.1, 0.1, len(rows)))   # measured FLOPs
    a0 = isoflop.isoflop_fit(N, D, L, C)["a"]
    assert a0 == pytest.approx(_interpolated_a(N, D, L, C), abs=1e-9)
    W = bs.resample_weights(len(N), 40, 0)
    diffs = []
    for w in W:
        Nd, Dd, Ld, Cd = _dup(w, N, D, L, C)
        ref = _interpolated_a(Nd, Dd, Ld, Cd)
        assert isoflop.isoflop_fit(N, D, L, C, w=w)["a"] == pytest.approx(ref, abs=1e-9)
        assert isoflop.isoflop_fit(Nd, Dd, Ld, Cd)["a"] == pytest.approx(ref, abs=1e-9)
        diffs.append(abs(ref - a0))
    assert max(diffs) > 1e-3   # the replicates do move


def test_grouped_isoflop_fit_counts_a_run_drawn_k_times_k_times():
    """With budget labels each profile's parabola is a weighted least-squares fit (weights = counts)
    and the profile's compute a count-weighted geometric mean: np.polyfit on the duplicated rows."""
    rng = np.random.default_rng(2)
    budgets = np.geomspace(1e17, 1e20, 5)
    N = np.concatenate([np.geomspace(c ** 0.5 / 300, c ** 0.5 / 3, 7) for c in budgets])
    budget = np.repeat(np.arange(1.0, 6.0), 7)
    C = np.repeat(budgets, 7) * (1 + rng.uniform(-0.02, 0.02, len(N)))
    D = C / (6 * N)
    L = laws.chinchilla(N, D, *(SPEECH[k] for k in ("E", "A", "B", "alpha", "beta")))
    L = L * (1 + 0.01 * rng.standard_normal(len(L)))
    for w in bs.resample_weights(len(N), 30, 0, budget):
        Nd, Ld, Cd, bd = _dup(w, N, L, C, budget)
        lcs, lns = [], []
        for b in np.unique(bd):
            i = bd == b
            if len(np.unique(Nd[i])) < 3:
                continue
            p2, p1, _ = np.polyfit(np.log(Nd[i]), Ld[i], 2)
            xs = -p1 / (2 * p2)
            if p2 > 0 and np.log(Nd[i]).min() <= xs <= np.log(Nd[i]).max():
                lcs.append(np.mean(np.log(Cd[i])))
                lns.append(xs)
        r = isoflop.isoflop_fit(N, D, L, C, budget, w)
        if len(lcs) < 2:
            assert r is None or not np.isfinite(r["a"])
            continue
        assert r["a"] == pytest.approx(np.polyfit(lcs, lns, 1)[0], abs=1e-8)


def test_envelope_fits_and_downstream_count_a_run_drawn_k_times_k_times():
    """Downstream's linear fit is weighted least squares (np.polyfit on the duplicated rows with the
    binomial weights). The envelopes (Approach 1's loss envelope, the accuracy envelope behind
    downstream gamma) are a minimum / maximum over runs: a copy of a run never improves on itself,
    so the duplicated table has the same envelope, each run on it once, and the same line."""
    rows = simulate.simulate_rows(law="speech", noise=0.01, seed=3, tasks={"t": (0.8, 3.0, 3.2)},
                                  n_items=500)
    N, D, L, acc, n = (np.array([r[k] for r in rows], float)
                       for k in ("n_params", "tokens", "test_loss", "acc_t", "n_t"))
    C = 6 * N * D
    for w in bs.resample_weights(len(N), 40, 0):
        Nd, Ld, Cd, accd, nd = _dup(w, N, L, C, acc, n)
        p = np.clip(accd, 0.02, 0.98)
        c1, c0 = np.polyfit(Ld, accd, 1, w=np.sqrt(nd / (p * (1 - p))))
        out, front = downstream.task_fit(L, C, acc, n, w, sig=False)
        assert (out["c0"], out["c1"]) == pytest.approx((c0, c1), abs=1e-10)
        best, fr = -np.inf, []
        for i in np.argsort(Cd, kind="stable"):
            if accd[i] > best:
                fr.append(i)
                best = accd[i]
        assert out["gamma"] == pytest.approx(np.polyfit(np.log(Cd[fr]), np.log(accd[fr]), 1)[0], abs=1e-10)
        best, fr = np.inf, []
        for i in np.argsort(Cd, kind="stable"):
            if Ld[i] < best:
                fr.append(i)
                best = Ld[i]
        k = isoflop.kaplan_fit(N, C, L, w)
        assert k["gamma"] == pytest.approx(-np.polyfit(np.log(Cd[fr]), np.log(Ld[fr]), 1)[0], abs=1e-10)
        assert k["a_env"] == pytest.approx(np.polyfit(np.log(Cd[fr]), np.log(Nd[fr]), 1)[0], abs=1e-10)
