"""Poorly constrained and degenerate run tables: fits stay in their search region or the input is
refused in one line."""

import numpy as np
import pytest

from slmjax.analysis.scaling import approach3, laws, simulate, vpfit
from slmjax.analysis.scaling import bootstrap as bs

SPEECH = {k: v for k, v in laws.PAPER_LAWS["speech"].items() if k not in ("rn", "rd")}


@pytest.mark.parametrize("seed", [33, 42])
def test_vp_point_fit_stays_inside_the_grid_its_replicates_search(seed):
    """D/N in {2, 4, 8} with 5% noise leaves one exponent free; the Nelder-Mead polish used to walk
    it to alpha or beta ~ 20-40 (A or B = 1e140 or inf) while every replicate stopped near 1.5."""
    t = simulate.simulate_table(law=SPEECH, noise=0.05, seed=seed, ratios=(2, 4, 8))
    lN, lD, L = np.log(t.n_params), np.log(t.tokens), t.test_loss
    hi = vpfit.ALPHA_GRID[1]
    raw = vpfit.vp_fit(lN, lD, L, polish=False)
    fit = vpfit.vp_fit(lN, lD, L)
    p = fit.params[0]
    assert np.all(np.isfinite(p)) and np.all((p[3:] > 0) & (p[3:] <= hi)), p
    assert fit.sse[0] <= raw.sse[0]
    boot = approach3.vp_bootstrap(lN, lD, L, bs.resample_weights(len(L), 20, seed=0), workers=1)
    assert np.all(boot[:, 3:] <= hi)
    # Independent check of the reported SSE: residuals in float64 at the reported parameters.
    assert fit.sse[0] == pytest.approx(np.sum((L - laws.chinchilla(t.n_params, t.tokens, *p)) ** 2), rel=1e-9)


@pytest.mark.parametrize("kind,message", [
    ("C", "sim: all runs at one compute budget (C = 6ND within 5%), so L(N, D) cannot separate"),
    ("D", "sim: all runs at one token count D, so L(N, D) cannot separate"),
])
def test_runs_on_one_line_in_log_n_log_d_one_clear_line(kind, message):
    """Six sizes at one compute budget (or one D) passed the size and D/N counts; the fit then
    reported alpha = 37.8, beta = 99.5, B = inf (one budget) or B = 0, beta = 1e-4 (one D)."""
    from slmjax.analysis.scaling.errors import FitInputError
    from slmjax.analysis.scaling.table import build_table
    N = np.geomspace(2e7, 8e8, 6)
    D = 1e19 / (6 * N) * (1 + 0.01 * np.arange(6)) if kind == "C" else np.full(6, 1e10)
    L = laws.chinchilla(N, D, *SPEECH.values())
    rows = [dict(run_id=f"r{i}", n_params=n, tokens=d, test_loss=l) for i, (n, d, l) in enumerate(zip(N, D, L))]
    with pytest.raises(FitInputError) as e:
        build_table(rows, "sim")
    assert message in str(e.value) and "\n" not in str(e.value)
    # Two budgets are enough to place the surface: no error.
    rows += [dict(run_id=f"s{i}", n_params=n, tokens=10 * d, test_loss=1.0) for i, (n, d) in enumerate(zip(N, D))]
    assert len(build_table(rows, "sim")) == 12


def test_runs_without_a_budget_label_are_listed():
    """A CSV whose budget column is blank for some runs: the grouped IsoFLOP fit used the labelled
    runs only and the others were left out of Approach 2 without a word."""
    from slmjax.analysis.scaling import isoflop
    from slmjax.analysis.scaling.table import build_table
    rows = []
    for c in (1e18, 1e19, 1e20):
        for n in np.geomspace(1e7, 1e9, 5) * (c / 1e19) ** 0.5:
            d = c / (6 * n)
            rows.append(dict(run_id=f"c{c:.0e}_n{n:.3g}", n_params=n, tokens=d, budget=c,
                             test_loss=laws.chinchilla(n, d, *SPEECH.values())))
    for r in rows[1::5]:
        r["budget"] = ""
    t = build_table(rows, "partial")
    note = [s for s in t.notes if s.startswith("budget missing")]
    assert note == ["budget missing for 3 single-epoch run(s) (c1e+18_n1e+07, c1e+19_n3.16e+07, "
                    "c1e+20_n1e+08): IsoFLOP profiles (Approach 2) use only the labelled runs"]
    r = isoflop.isoflop_fit(t.n_params, t.tokens, t.test_loss, 6 * t.n_params * t.tokens, t.budget)
    assert sum(len(p["runs"]) for p in r["profiles"]) == 12


def test_vp_fits_stay_above_the_grid_floor():
    """A law whose beta (0.003) lies below the grid's lowest exponent (0.01): zooms clipped at 1e-4
    and the polish at 0, so replicates ended at beta ~ 6e-4, outside the range the README states
    (and the diagnostics measure the grid edge from); point fit and replicates stay within it."""
    law = dict(E=1.0, A=13.9, B=0.5, alpha=0.25, beta=0.003)
    t = simulate.simulate_table(law=law, noise=0.002, seed=1)
    lN, lD, L = np.log(t.n_params), np.log(t.tokens), t.test_loss
    lo, hi = vpfit.ALPHA_GRID[:2]
    p = vpfit.vp_fit(lN, lD, L).params[0]
    boot = approach3.vp_bootstrap(lN, lD, L, bs.resample_weights(len(L), 20, seed=0), workers=1)
    assert lo <= p[3] <= hi and lo <= p[4] <= hi, p
    assert np.all((boot[:, 3:] >= lo) & (boot[:, 3:] <= hi)), boot[:, 3:].min()


@pytest.mark.parametrize("n_runs", [4, 5])
def test_no_more_runs_than_the_law_has_parameters_is_one_clear_line(n_runs):
    """Three or more sizes and D/N ratios in 4 or 5 runs passed the coverage checks: the 5-parameter
    law then went through every run (SSE 0, or 3e-7 for 4 runs) and the report printed intervals,
    one of them not holding its own point estimate."""
    from slmjax.analysis.scaling.errors import FitInputError
    from slmjax.analysis.scaling.table import build_table
    N = np.array([2e7, 8.5e7, 1.5e8, 3e8, 6e8])[:n_runs]
    D = N * np.array([2, 30, 8, 100, 20])[:n_runs]
    L = laws.chinchilla(N, D, *SPEECH.values())
    rows = [dict(run_id=f"r{i}", n_params=n, tokens=d, test_loss=l) for i, (n, d, l) in enumerate(zip(N, D, L))]
    with pytest.raises(FitInputError) as e:
        build_table(rows, "few")
    msg = str(e.value)
    assert msg.startswith(f"few: only {n_runs} runs to fit L(N, D)") and "need at least 6" in msg
    assert "\n" not in msg
    rows.append(dict(run_id="r6", n_params=1e9, tokens=4e9, test_loss=2.0))
    rows += [] if n_runs == 5 else [dict(run_id="r7", n_params=4e7, tokens=4e9, test_loss=2.5)]
    assert len(build_table(rows, "few")) == 6


def test_approach1_without_three_sizes_on_its_envelope_gives_no_a_env_interval():
    """The loss-compute envelope holds 2 sizes, so N ~ C^a_env has no estimate (NaN); replicates
    that drew a third size onto it used to give it an interval anyway ("C^nan [0.328, 0.555]")."""
    from slmjax.analysis.scaling import FitOptions, analyse, isoflop, report
    from slmjax.analysis.scaling.table import build_table
    runs = [(1e7, 1e8, 6.0), (1e7, 2e8, 5.0), (1e7, 2e9, 3.0), (3e7, 2e8, 4.0), (3e7, 6e8, 3.9),
            (3e7, 3e9, 3.5), (1e8, 1.5e8, 4.5), (1e8, 1e9, 3.05), (1e8, 3e9, 3.1)]
    t = build_table([dict(run_id=f"r{i}", n_params=n, tokens=d, test_loss=l)
                     for i, (n, d, l) in enumerate(runs)], "env")
    C = 6 * t.n_params * t.tokens
    front = isoflop.kaplan_fit(t.n_params, C, t.test_loss)["envelope"]
    assert sorted(front) == [0, 1, 2, 3, 4]  # by hand: sizes 1e7 and 3e7 only
    res, _ = analyse(t, FitOptions(bootstrap=60, huber_bootstrap=0, n_refine=2, workers=1, sigmoid=False))
    a1 = res["approach1"]
    assert a1["a_env"]["value"] is None and a1["a_env"]["lo"] is None and a1["a_env"]["hi"] is None
    assert a1["a_env_skipped"] == "2 model size(s) on the envelope (need 3)"
    line = next(ln for ln in report.render(res, {}).splitlines() if ln.startswith("- Approach 1 ("))
    assert "N on the envelope not fitted: 2 model size(s) on the envelope (need 3)" in line
    assert "nan" not in line
