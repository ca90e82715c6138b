"""Held-out validation (checks.holdout): which runs are held out, and the errors and coverage
reported for them, against the law's closed form and hand arithmetic written here in float64."""

import numpy as np
import pytest

from slmjax.analysis.scaling import checks, laws, simulate
from slmjax.analysis.scaling.table import build_table

SPEECH = {k: v for k, v in laws.PAPER_LAWS["speech"].items() if k not in ("rn", "rd")}


def test_split_takes_whole_budgets_largest_first_until_the_fraction():
    # 10 runs in budgets of 4, 3, 2 and 1 runs. Budgets 4 and 3 hold 3 of 10 runs: exactly 30%,
    # enough for frac = 0.3; frac = 0.31 takes budget 2 too (6 of 10).
    budget = np.array([1e18] * 4 + [1e19] * 3 + [1e20] * 2 + [1e21], float)
    C = budget * (1 + 0.01 * np.arange(10))
    assert checks.holdout_split(C, budget, 0.3).tolist() == [False] * 7 + [True] * 3
    assert checks.holdout_split(C, budget, 0.31).tolist() == [False] * 4 + [True] * 6
    assert checks.holdout_split(C, budget, 0.05).tolist() == [False] * 9 + [True]
    # Without labels (any missing): the top fraction by compute, np.quantile's linear position
    # (n - 1)(1 - frac) = 31.2 of 40 lies between the 32nd and 33rd smallest C: the 8 largest.
    rng = np.random.default_rng(0)
    C = rng.permutation(np.geomspace(1e17, 1e21, 40))
    held = checks.holdout_split(C, np.full(40, np.nan), 0.2)
    assert np.array_equal(np.nonzero(held)[0], np.sort(np.argsort(C)[-8:]))


def test_errors_and_coverage_of_held_out_runs_by_hand():
    """Exact law on the 32 cheaper runs of the paper's grid; the 8 largest by compute (no budget
    labels) have their losses moved off the law by known factors. The fit on the others is the law,
    so each held-out run's prediction is the closed form, its signed error prediction - observed,
    its relative error that over the observed loss; prediction intervals (exact training data: no
    residual spread) cover none of the moved runs."""
    rows = simulate.simulate_rows(law=SPEECH, noise=0.0, seed=0)
    C = np.array([6 * r["n_params"] * r["tokens"] for r in rows])
    held = np.sort(np.argsort(C)[-8:])
    factors = np.array([1.05, 0.97, 1.10, 0.90, 1.02, 0.95, 1.08, 0.93])
    for i, f in zip(held, factors):
        rows[i]["test_loss"] *= f
    t = build_table(rows, "sim")
    N, D, L = t.n_params, t.tokens, t.test_loss
    r = checks.holdout(t, N, D, L, 6 * N * D, frac=0.2, reps=20, seed=0, workers=1, level=0.9)
    assert (r["n_train"], r["n_held"], r["level"]) == (32, 8, 0.9)
    assert r["held_min_C"] == pytest.approx(C[held].min(), rel=1e-12)
    assert [x["run_id"] for x in r["runs"]] == [rows[i]["run_id"] for i in held]
    p = SPEECH
    assert [r["params"][k] for k in ("E", "A", "B", "alpha", "beta")] == pytest.approx(
        [p["E"], p["A"], p["B"], p["alpha"], p["beta"]], rel=1e-3)
    Nh = np.array([rows[i]["n_params"] for i in held], float)
    Dh = np.array([rows[i]["tokens"] for i in held], float)
    true = p["E"] + p["A"] / Nh ** p["alpha"] + p["B"] / Dh ** p["beta"]
    obs = true * factors
    got = {k: np.array([x[k] for x in r["runs"]]) for k in ("observed", "predicted", "signed_error", "rel_error")}
    assert got["observed"] == pytest.approx(obs, rel=1e-12)
    assert got["predicted"] == pytest.approx(true, rel=1e-5)
    assert got["signed_error"] == pytest.approx(true - obs, rel=1e-3)
    want_rel = (true - obs) / obs                     # = 1 / factor - 1
    assert got["rel_error"] == pytest.approx(want_rel, rel=1e-3)
    assert r["mean_signed_rel_error"] == pytest.approx(np.mean(want_rel), rel=1e-3)
    assert r["max_abs_rel_error"] == pytest.approx(np.max(np.abs(want_rel)), rel=1e-3)
    for x, o, tr in zip(r["runs"], obs, true):
        lo, hi = x["pi"]
        assert lo <= hi and abs(lo - tr) < 1e-3 * tr and abs(hi - tr) < 1e-3 * tr   # tight around the law
        assert x["covered"] is False
    assert r["pi_coverage"] == 0.0 and r["ci_coverage"] == 0.0
    # without budget labels the runs are held out by compute, and the report says so
    from slmjax.analysis.scaling.report import _held_out
    assert r["by_budget"] is False
    assert _held_out(r, 0.2) == ("the 8 of 40 single-epoch runs of the most compute held out "
                                 "(--holdout=0.2; not every run has a budget label, so they are held "
                                 "out by compute)")


def test_held_out_runs_on_the_law_are_covered_and_residual_spread_widens_the_intervals():
    """Training residuals enter the prediction intervals: with 2% noise on the training runs and
    the held-out runs exactly on the law, the intervals are wider than the fit's own (ci), by about
    the residual quantiles, and cover most of those runs."""
    rows = simulate.simulate_rows(law=SPEECH, noise=0.0, seed=0)
    C = np.array([6 * r["n_params"] * r["tokens"] for r in rows])
    held = set(np.argsort(C)[-8:].tolist())
    rng = np.random.default_rng(5)
    z = rng.standard_normal(len(rows))
    for i, r in enumerate(rows):
        if i not in held:
            r["test_loss"] *= 1 + 0.02 * z[i]
    t = build_table(rows, "sim")
    N, D, L = t.n_params, t.tokens, t.test_loss
    r = checks.holdout(t, N, D, L, 6 * N * D, frac=0.2, reps=100, seed=0, workers=1, level=0.9)
    train = np.array(sorted(set(range(len(rows))) - held))
    # Residual quantiles of the training runs at the reported fit, inflated for its 5 parameters.
    fitted = laws.chinchilla(N[train], D[train], *(r["params"][k] for k in ("E", "A", "B", "alpha", "beta")))
    res = (L[train] - fitted) * np.sqrt(32 / 27)
    q_lo, q_hi = np.quantile(res, [0.05, 0.95])
    for x in r["runs"]:
        (clo, chi), (plo, phi) = x["ci"], x["pi"]
        assert plo < clo and chi < phi
        assert (phi - plo) > 0.7 * (q_hi - q_lo)
    assert r["pi_coverage"] >= 0.75


def test_prediction_interval_is_the_fit_plus_inflated_training_residuals(monkeypatch):
    """With every bootstrap replicate equal to the point fit (replicates stubbed), a held-out run's
    prediction interval is its prediction plus the level's quantiles of resampled training
    residuals, each inflated by sqrt(n / (n - 5)) for the 5 fitted parameters: written out here in
    float64, drawing from numpy.random.default_rng(seed + 2) as documented for the residual draws."""
    from slmjax.analysis.scaling import approach3, vpfit
    rows = simulate.simulate_rows(law=SPEECH, noise=0.02, seed=4)
    t = build_table(rows, "sim")
    N, D, L = t.n_params, t.tokens, t.test_loss
    C = 6 * N * D
    monkeypatch.setattr(approach3, "vp_bootstrap", lambda lN, lD, LL, W, workers: np.tile(
        vpfit.vp_fit(lN, lD, LL).params[0], (len(W), 1)))
    seed, reps, level = 3, 50, 0.8
    r = checks.holdout(t, N, D, L, C, frac=0.2, reps=reps, seed=seed, workers=1, level=level)
    held = np.zeros(len(N), bool)
    held[np.argsort(C)[-8:]] = True
    E, A, B, al, be = (r["params"][k] for k in ("E", "A", "B", "alpha", "beta"))
    law = lambda n, d: E + A / n ** al + B / d ** be      # noqa: E731
    resid = (L[~held] - law(N[~held], D[~held])) * np.sqrt(32 / (32 - 5))
    pred = law(N[held], D[held])
    draws = pred[None] + np.random.default_rng(seed + 2).choice(resid, size=(reps, 8))
    lo, hi = np.quantile(draws, [0.1, 0.9], axis=0)
    assert [x["predicted"] for x in r["runs"]] == pytest.approx(pred, rel=1e-12)
    np.testing.assert_allclose([x["ci"] for x in r["runs"]], np.stack([pred, pred], 1), rtol=1e-12)
    np.testing.assert_allclose([x["pi"] for x in r["runs"]], np.stack([lo, hi], 1), rtol=1e-9)
    covered = (lo <= L[held]) & (L[held] <= hi)
    assert [x["covered"] for x in r["runs"]] == covered.tolist()
    assert r["pi_coverage"] == pytest.approx(covered.mean())
