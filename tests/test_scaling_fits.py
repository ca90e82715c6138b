"""Fitters against independent references: scipy NNLS, finite differences, exact synthetic laws."""

import itertools

import numpy as np
import pytest
from scipy import optimize

from slmjax.analysis.scaling import datacon, downstream, huber, isoflop, laws, simulate, vpfit
from slmjax.analysis.scaling import bootstrap as bs

SPEECH = {k: v for k, v in laws.PAPER_LAWS["speech"].items() if k not in ("rn", "rd")}


def _grid(noise=0.0, seed=0, **kw):
    t = simulate.simulate_table(law=SPEECH, noise=noise, seed=seed, **kw)
    return np.log(t.n_params), np.log(t.tokens), t.test_loss


def test_projected_nnls_matches_scipy_nnls():
    lN, lD, L = _grid(noise=0.02, seed=3)
    rng = np.random.default_rng(0)
    w = rng.multinomial(len(L), np.full(len(L), 1 / len(L))).astype(float)
    for ab in [(0.25, 0.24), (0.05, 0.9), (1.2, 0.02), (0.6, 0.6)]:
        sse, E, A, B = vpfit.projected(np.array(ab), lN, lD, L, w)
        X = np.stack([np.ones_like(L), np.exp(-ab[0] * lN), np.exp(-ab[1] * lD)], 1)
        sw = np.sqrt(w)
        coef, rnorm = optimize.nnls(X * sw[:, None], L * sw)
        assert sse == pytest.approx(rnorm ** 2, rel=1e-6, abs=1e-12)
        np.testing.assert_allclose([E, A, B], coef, rtol=1e-5, atol=1e-9)


def test_vp_recovers_exact_law_and_batch_equals_single():
    lN, lD, L = _grid()
    p = vpfit.vp_fit(lN, lD, L).params[0]
    np.testing.assert_allclose(p, [SPEECH[k] for k in ("E", "A", "B", "alpha", "beta")], rtol=1e-4)
    lN, lD, L = _grid(noise=0.01, seed=1)
    W = bs.resample_weights(len(L), 6, seed=0)
    batch = vpfit.vp_fit(lN, lD, L, weights=W, polish=False).params
    for w, row in zip(W, batch):
        np.testing.assert_allclose(vpfit.vp_fit(lN, lD, L, weights=w[None], polish=False).params[0], row,
                                   rtol=1e-8)


def test_huber_gradient_and_exact_recovery():
    lN, lD, L = _grid(noise=0.01, seed=2)
    th = np.array([0.4, 2.0, 3.5, 0.3, 0.25])
    w = np.arange(len(L)) % 3 + 0.5
    f, g = huber._obj_grad(th, lN, lD, np.log(L), w, 0.03)
    num = [(huber._obj_grad(th + h, lN, lD, np.log(L), w, 0.03)[0]
            - huber._obj_grad(th - h, lN, lD, np.log(L), w, 0.03)[0]) / 2e-6 for h in 1e-6 * np.eye(5)]
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-9)
    # Independent objective: float64 loop written here.
    ref = 0.0
    for i in range(len(L)):
        r = np.log(np.exp(th[0]) + np.exp(th[1] - th[3] * lN[i]) + np.exp(th[2] - th[4] * lD[i])) - np.log(L[i])
        ref += w[i] * (0.5 * r * r if abs(r) <= 0.03 else 0.03 * (abs(r) - 0.015))
    assert f == pytest.approx(ref, rel=1e-12)
    lN, lD, L = _grid()
    res = huber.huber_fit(lN, lD, L, n_refine=16)
    np.testing.assert_allclose(res.params, [SPEECH[k] for k in ("E", "A", "B", "alpha", "beta")], rtol=1e-4)
    assert not huber.starts_disagree(res) and not huber.at_bounds(res)


def _quadratic_profiles(lo, hi):
    """IsoFLOP profiles at 1e18..1e21 whose loss is exactly quadratic in log N around
    N*(C) = 0.1 C^0.5 (so a = 0.5), with minimum 3 - 0.1 log10 C; sizes N* e^[lo, hi]."""
    N, D, L, budget = [], [], [], []
    for C in (1e18, 1e19, 1e20, 1e21):
        ns = 0.1 * C ** 0.5 * np.exp(np.linspace(lo, hi, 7))
        N += list(ns)
        D += list(C / (6 * ns))
        L += list(3 - 0.1 * np.log10(C) + 0.2 * (np.log(ns) - np.log(0.1 * C ** 0.5)) ** 2)
        budget += [C] * 7
    return map(np.array, (N, D, L, budget))


def test_isoflop_parabola_minimum_and_exponent():
    N, D, L, budget = _quadratic_profiles(-1, 1)
    r = isoflop.isoflop_fit(N, D, L, 6 * N * D, budget)
    assert r["a"] == pytest.approx(0.5, abs=1e-9) and r["grouped"] and r["n_used"] == 4
    assert r["k"] == pytest.approx(0.1, rel=1e-6)


def test_envelope_and_kaplan():
    C = np.array([1, 2, 3, 4, 5, 6.0]) * 1e18
    L = np.array([3.0, 2.9, 3.1, 2.5, 2.6, 2.4])
    assert isoflop.envelope(C, L).tolist() == [0, 1, 3, 5]
    C = np.geomspace(1e17, 1e21, 9)
    r = isoflop.kaplan_fit(np.geomspace(1e7, 1e9, 9), C, 7.0 * (C / 1e17) ** -0.05)
    assert r["gamma"] == pytest.approx(0.05, rel=1e-9) and r["a_env"] == pytest.approx(0.5, rel=1e-9)


def test_downstream_linear_sigmoid_gamma():
    rng = np.random.default_rng(0)
    L = np.linspace(2.0, 3.0, 30)
    acc = 0.5 + (0.7 - 0.5) / (1 + np.exp(-4.0 * (2.5 - L)))
    n = np.full(30, 1e7)
    c, k, L0 = downstream.sigmoid_fit(L, acc, n, np.ones(30))
    assert (c, k, L0) == pytest.approx((0.7, 4.0, 2.5), rel=1e-4)
    lin = 0.9 - 0.15 * L + 0.001 * rng.standard_normal(30)
    c0, c1 = downstream.linear_fit(L, lin, np.full(30, np.nan), np.ones(30))
    ref = np.polyfit(L, lin, 1, w=np.sqrt(1 / (lin * (1 - lin))))
    assert (c1, c0) == pytest.approx(tuple(ref), rel=1e-9)
    C = np.geomspace(1e16, 1e20, 12)
    q = 0.3 * C ** 0.02
    g, lq, front = downstream.gamma_fit(C, q, np.ones(12))
    assert g == pytest.approx(0.02, rel=1e-9) and len(front) == 12
    target = 0.3 * 1e21 ** 0.02
    assert downstream.compute_for(target, g, lq) == pytest.approx(1e21, rel=1e-6)


def test_repeat_terms_recovered_from_exact_data():
    law = dict(laws.PAPER_LAWS["speech"])
    t = simulate.simulate_table(law=law, noise=0.0, epochs=(2, 4, 8, 16, 40), ratios=(2, 4, 8, 20, 64, 100))
    m = t.multi_epoch
    stage1 = [law[k] for k in ("E", "A", "B", "alpha", "beta")]
    r = datacon.repeat_fit(t.n_params[m], t.tokens[m], t.unique_tokens[m], t.test_loss[m], stage1)
    assert r["rd"] == pytest.approx(law["rd"], rel=1e-3) and r["rn"] == pytest.approx(law["rn"], rel=1e-3)


def test_resample_weights_are_seeded_and_stratified():
    strata = np.array([1, 1, 1, 2, 2, np.nan, np.nan, np.nan])
    W1 = bs.resample_weights(8, 50, seed=7, strata=strata)
    assert np.array_equal(W1, bs.resample_weights(8, 50, seed=7, strata=strata))
    assert np.all(W1[:, :3].sum(1) == 3) and np.all(W1[:, 3:5].sum(1) == 2) and np.all(W1[:, 5:].sum(1) == 3)


def test_bimodality_coefficient():
    from slmjax.analysis.scaling.checks import _bimodality
    rng = np.random.default_rng(0)
    assert _bimodality(rng.standard_normal(4000)) == pytest.approx(1 / 3, abs=0.03)   # normal: 1/3
    two = np.concatenate([rng.normal(-3, 0.5, 2000), rng.normal(3, 0.5, 2000)])
    assert _bimodality(two) > 0.8


def test_reference_table(tmp_path):
    assert downstream.read_reference(None)["text"]["sblimp"] == 0.066
    p = tmp_path / "ref.csv"
    p.write_text("task,gamma,label\nsblimp,0.05,pythia\ntsc,0.03,pythia\n")
    assert downstream.read_reference(str(p)) == {"pythia": {"sblimp": 0.05, "tsc": 0.03}}
    p.write_text("task,slope\nsblimp,0.05\n")
    with pytest.raises(downstream.FitInputError, match="needs columns task,gamma"):
        downstream.read_reference(str(p))


def _repeat_objective(lr, N, D, U, L, w, stage1, delta=0.03):
    """Huber (delta) on log-loss of the data-constrained law, written out from PAPER.md in float64."""
    E, A, B, al, be = stage1
    rn, rd = np.exp(lr)
    G = (al * A / (be * B)) ** (1 / (al + be))
    U_N = np.minimum(N, G * (G * U) ** (be / al))        # N whose D*(C) is U
    N_eff = U_N + U_N * rn * (1 - np.exp(-(N / U_N - 1) / rn))
    D_eff = U + U * rd * (1 - np.exp(-(D / U - 1) / rd))
    r = np.log(E + A / N_eff ** al + B / D_eff ** be) - np.log(L)
    return float(np.sum(w * np.where(np.abs(r) <= delta, r * r / 2, delta * (np.abs(r) - delta / 2))))


def test_repeat_term_replicates_reach_the_best_minimum():
    """A replicate started only from the point fit stays on the flat plateau where R*_D sits at its
    bound (here the point fit's R*_D = 1e4) although R*_D ~ 35 fits that resample better: every
    replicate must reach the best of a dense multistart L-BFGS-B of the objective written here."""
    from slmjax.analysis.scaling import fit
    law = dict(laws.PAPER_LAWS["speech"])
    t = simulate.simulate_table(law=law, noise=0.02, seed=0, epochs=(2, 4, 8))
    m, s = t.multi_epoch, ~t.multi_epoch
    stage1 = vpfit.vp_fit(np.log(t.n_params[s]), np.log(t.tokens[s]), t.test_loss[s]).params[0]
    data = (t.n_params[m], t.tokens[m], t.unique_tokens[m], t.test_loss[m])
    point = datacon.repeat_fit(*data, stage1)
    x0 = [np.log([point["rn"], point["rd"]])]
    starts = list(itertools.product(np.linspace(np.log(0.05), np.log(1e4), 5), repeat=2))
    for w in bs.resample_weights(int(m.sum()), 20, seed=0):
        got = fit._datacon_row((data, 0.03, x0), (stage1, w))
        f = lambda lr: _repeat_objective(lr, *data, w, stage1)
        ref = min(optimize.minimize(f, s0, method="L-BFGS-B", bounds=[datacon.LOG_R_BOUNDS] * 2).fun
                  for s0 in starts)
        assert f(np.log([got["rn"], got["rd"]])) <= ref * (1 + 1e-6) + 1e-12


def test_downstream_linear_fit_weights_by_item_count():
    """acc = c0 + c1 L by least squares weighted by n / (p (1 - p)) (module doc): runs scored on
    more items count more. Reference: np.polyfit (its w multiplies the unsquared residual) with
    those weights written out here, on runs whose item counts differ by 100x."""
    rng = np.random.default_rng(4)
    L = np.linspace(2.0, 3.0, 12)
    acc = 0.95 - 0.12 * L + 0.02 * rng.standard_normal(12)
    n = np.array([50.0, 5000.0] * 6)
    c0, c1 = downstream.linear_fit(L, acc, n, np.ones(12))
    ref = np.polyfit(L, acc, 1, w=np.sqrt(n / (acc * (1 - acc))))
    assert (c1, c0) == pytest.approx(tuple(ref), rel=1e-9)
    unweighted = np.polyfit(L, acc, 1, w=np.sqrt(1 / (acc * (1 - acc))))
    assert abs(unweighted[0] - ref[0]) > 1e-3       # the item counts move the line


def test_isoflop_profile_minimum_and_kaplan_scale_by_hand():
    """Each IsoFLOP profile's parabola minimum L_min (drawn on the IsoFLOP plot) is the loss at its
    N*, and Approach 1's L = (C_c / C)^gamma gives C_c: both against the exact laws the data follow."""
    N, D, L, budget = _quadratic_profiles(-0.6, 1.4)   # off centre: N* is not the mean log N
    r = isoflop.isoflop_fit(N, D, L, 6 * N * D, budget)
    for p, C in zip(r["profiles"], (1e18, 1e19, 1e20, 1e21)):
        assert p["C"] == pytest.approx(C, rel=1e-12)
        assert p["N_opt"] == pytest.approx(0.1 * C ** 0.5, rel=1e-9)
        assert p["L_min"] == pytest.approx(3 - 0.1 * np.log10(C), rel=1e-9)
    C = np.geomspace(1e17, 1e21, 9)
    r = isoflop.kaplan_fit(np.geomspace(1e7, 1e9, 9), C, (2.5e9 / C) ** 0.05)
    assert r["gamma"] == pytest.approx(0.05, rel=1e-9) and r["C_c"] == pytest.approx(2.5e9, rel=1e-6)
    assert r["log_k"] == pytest.approx(0.05 * np.log(2.5e9), rel=1e-9)


def test_huber_e_bound_is_the_lowest_loss_of_the_drawn_runs():
    """e = log E is bounded above by log of the lowest loss (E below every loss); in a bootstrap
    replicate that is the lowest loss among the runs drawn (w > 0), not of runs left out."""
    lN, lD, L = _grid(noise=0.01, seed=2)
    w = np.ones(len(L))
    low = np.argsort(L)[:3]
    w[low] = 0.0
    res = huber.huber_fit(lN, lD, L, w=w, grid=False, extra_starts=[[0.4, 2.0, 3.5, 0.3, 0.25]])
    assert res.bounds[0] == (-10.0, pytest.approx(np.log(np.sort(L)[3]), rel=1e-15))
    assert res.bounds[0][1] > np.log(L.min())
    full = huber.huber_fit(lN, lD, L, grid=False, extra_starts=[[0.4, 2.0, 3.5, 0.3, 0.25]])
    assert full.bounds[0][1] == pytest.approx(np.log(L.min()), rel=1e-15)


def test_huber_starts_disagree_and_at_bounds_by_hand():
    """starts_disagree: starts ending within rel_obj (1e-3) of the best objective that differ in alpha
    or beta by more than 0.02; at_bounds: parameters within tol (relative, at least absolute) of a
    bound. Hand-made results, so each case is known."""
    bounds = [(-10.0, 0.5), (-30.0, 60.0), (-30.0, 60.0), huber.EXP_BOUNDS, huber.EXP_BOUNDS]

    def res(top, theta=(0.0, 2.0, 3.0, 0.3, 0.3)):
        top = [(f, np.array([1.7, 10.0, 30.0, a, b])) for f, a, b in top]
        return huber.HuberResult(np.zeros(5), np.array(theta, float), top[0][0] if top else 0.0, True, 1, top, bounds)

    assert huber.starts_disagree(res([(1.0, 0.30, 0.24), (1.0009, 0.35, 0.24)])) is True    # alpha 0.05 apart
    assert huber.starts_disagree(res([(1.0, 0.30, 0.24), (1.0009, 0.30, 0.27)])) is True    # beta 0.03 apart
    assert huber.starts_disagree(res([(1.0, 0.30, 0.24), (1.0011, 0.35, 0.24)])) is False   # worse start
    assert huber.starts_disagree(res([(1.0, 0.30, 0.24), (1.0009, 0.315, 0.235)])) is False  # within 0.02
    assert huber.starts_disagree(res([(1.0, 0.30, 0.24)])) is False
    assert huber.starts_disagree(res([])) is False
    assert huber.at_bounds(res([], (0.0, 2.0, 3.0, 0.3, 0.3))) == []
    assert huber.at_bounds(res([], (0.5, 2.0, 3.0, 0.3, 3.0))) == ["e", "beta"]             # upper bounds
    assert huber.at_bounds(res([], (0.0, -30.0, 3.0, 1e-4, 0.3))) == ["a", "alpha"]         # lower bounds
    assert huber.at_bounds(res([], (0.0, 2.0, 3.0, 1e-4 + 2e-6, 0.3))) == []                # 2e-6 off: not


def test_grid_local_minima_by_hand():
    """Local minima of the SSE grid (no lower neighbour, diagonals included) within 1% of the best,
    best first: a cell within 1% that has a lower neighbour is not one."""
    g = np.array([[1.0, 1.005, 2.0],
                  [2.0, 3.0, 2.0],
                  [2.0, 2.0, 1.008]])
    a, b = np.array([0.1, 0.2, 0.3]), np.array([0.4, 0.5, 0.6])
    assert vpfit.grid_local_minima(g, a, b, rel=0.01) == [(0.1, 0.4, 1.0), (0.3, 0.6, 1.008)]
    assert vpfit.grid_local_minima(g, a, b, rel=0.005) == [(0.1, 0.4, 1.0)]
