"""Downstream tasks on which no run beats chance: one line, not a gamma, sigmoid ceiling and
compute-to-target fitted to noise around 0.5."""

import numpy as np
import pytest
from scipy import stats

from slmjax.analysis.scaling import downstream, fit, simulate
from slmjax.analysis.scaling import bootstrap as bs
from slmjax.analysis.scaling.table import build_table


def test_wilson_lower_end_matches_scipy():
    for k, n in [(90, 150), (260, 500), (3, 10), (500, 500)]:
        want = stats.binomtest(k, n).proportion_ci(0.95, method="wilson").low
        assert downstream.wilson_lo(k / n, n) == pytest.approx(want, rel=1e-9)


def test_task_at_chance_is_skipped_in_one_line(tmp_path):
    rows = simulate.simulate_rows(law="speech", noise=0.01, seed=3, tasks={"t": (0.8, 3.0, 3.2)}, n_items=500)
    rng = np.random.default_rng(0)
    for r in rows:
        r["acc_chance"], r["n_chance"] = rng.binomial(500, 0.5) / 500, 500
    table = build_table(rows, "sim")
    acc = table.acc["chance"][0]
    # One of the 40 runs beats chance at 95% alone (a chance of 1 - 0.975^40 = 64%); none does at
    # 95% over the 40 (Bonferroni, z = 3.02).
    assert downstream.wilson_lo(acc, 500).max() > 0.5
    assert downstream.wilson_lo(acc, 500, z=stats.norm.isf(0.025 / 40)).max() <= 0.5
    W = bs.resample_weights(len(table), 20, 0)
    opt = fit.FitOptions(bootstrap=20, workers=1, sigmoid=False, target_acc={"chance": 0.7, "t": 0.7})
    out, plots = fit._downstream(table, table.test_loss, table.flops["6N"], W, opt, 1, {})
    assert set(out["chance"]) == {"skipped"} and "no run above chance" in out["chance"]["skipped"]
    assert "\n" not in out["chance"]["skipped"]
    # its runs are still drawn, without a fit
    assert plots["chance"]["point"] is None and list(plots["chance"]["front"]) == []
    # The task whose accuracy rises with compute is fitted as before.
    assert out["t"]["gamma"]["value"] > 0 and "compute_to_target" in out["t"]
    from slmjax.analysis.scaling import plots as plotting
    p = {"downstream": plots, "L_all": table.test_loss, "C_all": table.flops["6N"]}
    for draw in (plotting.downstream_vs_loss(p, str(tmp_path)),
                 plotting.downstream_vs_compute(p, str(tmp_path), {})):
        assert draw and (tmp_path / draw).stat().st_size > 0


def test_gamma_without_three_envelope_runs_is_one_line_not_nan():
    """The cheapest run the most accurate: one run on the accuracy envelope, so no gamma. The report
    printed 'nan [lo, hi] (k of n replicates)' for gamma and the compute to target, the interval
    coming from the replicates that happened to draw 3 envelope runs."""
    from slmjax.analysis.scaling import report
    rows = simulate.simulate_rows(law="speech", noise=0.01, seed=3, tasks={"t": (0.8, 3.0, 3.2)}, n_items=500)
    C = np.array([6 * r["n_params"] * r["tokens"] for r in rows])
    rng = np.random.default_rng(1)
    for i, r in enumerate(rows):
        r["acc_t"] = 0.9 if i == int(np.argmin(C)) else rng.uniform(0.6, 0.8)
    table = build_table(rows, "sim")
    W = bs.resample_weights(len(table), 40, 0)
    opt = fit.FitOptions(bootstrap=40, workers=1, sigmoid=False, target_acc={"t": 0.95})
    out, _ = fit._downstream(table, table.test_loss, table.flops["6N"], W, opt, 1, downstream.read_reference(None))
    d = out["t"]
    assert d["envelope_runs"] == [str(table.run_id[int(np.argmin(C))])]
    assert d["gamma"]["value"] is None and d["gamma"]["lo"] is None and "1 run(s)" in d["gamma_skipped"]
    assert not any(k.startswith("ratio_") for k in d) and "skipped" in d["compute_to_target"]
    assert d["c1"]["value"] is not None   # the linear fit in loss does not need the envelope
    from slmjax.analysis.scaling.report import _iv
    assert _iv(d["gamma"], "{:.4f}") == "-" and _iv(d["compute_to_target"]) == "-"


def test_runs_below_chance_are_inside_the_accuracy_axis(tmp_path, monkeypatch):
    # The compute plot's accuracy axis began at 45%: runs at 43% (sBLIMP's length bias in the
    # demo) were drawn outside it.
    from slmjax.analysis.scaling import plots as plotting
    drawn = {}
    real_save = plotting._save

    def save(fig, out, name):
        drawn[name] = [ax.get_ylim() for ax in fig.axes]
        return real_save(fig, out, name)
    monkeypatch.setattr(plotting, "_save", save)
    C = np.array([1e10, 1e11, 1e12, 1e13])
    acc = np.array([0.43, 0.47, 0.49, 0.46])
    p = {"downstream": {"sblimp": dict(acc=acc, n=np.full(4, 150.0), point=None, front=[])},
         "L_all": np.array([3.0, 2.5, 2.0, 1.8]), "C_all": C}
    plotting.downstream_vs_compute(p, str(tmp_path), {})
    (lo, hi), = drawn["downstream_vs_compute.png"]
    assert lo < 43 and hi == 100


def test_chance_line_is_bonferroni_over_the_task_runs():
    """at_chance asks one run's 95% Wilson interval to clear 0.5 with the 95% spread over the runs
    (two-sided, Bonferroni): z = Phi^-1(1 - 0.025 / k) for k runs (2.807 for k = 10; not
    Phi^-1(1 - 0.05 / k) = 2.576). Wilson's lower end is written out here; the best run's accuracy is
    put where the two z disagree."""
    k, n = 10, 400
    z_right, z_wrong = stats.norm.isf(0.025 / k), stats.norm.isf(0.05 / k)
    assert (round(z_right, 3), round(z_wrong, 3)) == (2.807, 2.576)

    def wilson(p, z):
        return (p + z * z / (2 * n) - z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)

    between = [c for c in range(200, 400) if wilson(c / n, z_wrong) > 0.5 >= wilson(c / n, z_right)]
    assert between
    acc = np.full(k, 0.5)
    n_items = np.full(k, float(n))
    acc[3] = between[-1] / n                    # clears 0.5 only with the uncorrected z
    line = downstream.at_chance(acc, n_items)
    assert line is not None and f"over the {k} runs (best {100 * acc[3]:.1f}% of {n} items)" in line
    acc[3] = (between[-1] + 1) / n              # clears it with the Bonferroni z too
    assert wilson(acc[3], z_right) > 0.5 and downstream.at_chance(acc, n_items) is None
