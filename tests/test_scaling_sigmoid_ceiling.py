"""The sigmoid ceiling of a downstream task the runs do not constrain is reported as not
identified, with its interval the parameter bounds, not as a precise number: two runs barely above
chance printed '0.572 [0.572, 0.572]'."""

import numpy as np
import pytest

from slmjax.analysis.scaling import FitOptions, analyse, downstream, report, simulate
from slmjax.analysis.scaling.table import build_table


def _expit(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _rows(task):
    return simulate.simulate_rows(law="speech", noise=0.01, seed=3, tasks={"t": task}, n_items=2000)


def test_two_runs_above_chance_leave_the_ceiling_unidentified():
    rows = _rows((0.8, 3.0, 3.2))
    L = np.array([r["test_loss"] for r in rows])
    top = np.argsort(L)[:2]
    for i, r in enumerate(rows):
        r["acc_t"] = 0.572 if i in top else 0.5
    res, _ = analyse(build_table(rows, "sim"), FitOptions(bootstrap=40, huber_bootstrap=0, n_refine=1, workers=1))
    d = res["downstream"]["t"]
    # The fit is a step at k's upper bound with c the two runs' accuracy, in every replicate that
    # draws them: the old interval was [0.572, 0.572].
    assert d["sig_c"]["value"] == pytest.approx(0.572, abs=1e-6)
    assert d["sig_k"]["value"] == pytest.approx(1e4, rel=1e-6)
    # Reference in float64: the share of the fitted rise between the losses, and the runs past L0.
    k, L0 = d["sig_k"]["value"], d["sig_L0"]["value"]
    assert d["sig_rise"]["value"] == pytest.approx(_expit(k * (L0 - L.min())) - _expit(k * (L0 - L.max())), abs=1e-12)
    assert d["sig_top"]["value"] == int(np.sum(L < L0)) == 2
    assert d["sig_c_identified"] is False
    assert (d["sig_c"]["lo"], d["sig_c"]["hi"]) == (0.5, 1.0)
    why = d["sig_c_unidentified"]
    assert why.startswith("ceiling not identified: ") and "with 2 run(s) past its midpoint" in why and "\n" not in why
    md = report.render(res, {})
    assert "| t | 40 |" in md and "| not identified [0.5, 1] |" in md
    assert f"| t: sigmoid {why} |" in md
    assert "0.572 [0.572, 0.572]" not in md


def test_the_loss_plot_says_the_ceiling_is_not_identified(tmp_path, monkeypatch):
    """downstream_vs_loss.png drew an unidentified sigmoid as it draws a fitted one."""
    from slmjax.analysis.scaling import plots
    rows = _rows((0.8, 3.0, 3.2))
    top = np.argsort([r["test_loss"] for r in rows])[:2]
    for i, r in enumerate(rows):
        r["acc_t"] = 0.572 if i in top else 0.5
    res, p = analyse(build_table(rows, "sim"), FitOptions(bootstrap=40, huber_bootstrap=0, n_refine=1, workers=1))
    assert res["downstream"]["t"]["sig_c_identified"] is False
    labels = []
    keep = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out, name: labels.extend(
        t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()) or keep(fig, out, name))
    assert plots.downstream_vs_loss(p, str(tmp_path)) == "downstream_vs_loss.png"
    assert "sigmoid (ceiling not identified)" in labels and "sigmoid" not in labels, labels


@pytest.mark.parametrize("task,identified", [((0.56, 5.0, 4.0), False), ((0.75, 6.0, 2.2), True)])
def test_flat_accuracy_is_unidentified_and_a_covered_bend_is_not(task, identified):
    """Accuracy flat at 0.56 over the losses (the sigmoid's midpoint at 4.0, beyond them all): the
    fit is a straight line (k at its lower bound) and c was 0.622 [0.567, 0.626]. A sigmoid whose
    midpoint 2.2 lies among the losses 1.88-2.58 keeps its interval."""
    from slmjax.analysis.scaling import bootstrap as bs
    from slmjax.analysis.scaling import fit
    table = build_table(_rows(task), "sim")
    W = bs.resample_weights(len(table), 100, 0)
    out, _ = fit._downstream(table, table.test_loss, table.flops["6N"], W, FitOptions(bootstrap=100, workers=1), 1, {})
    d = out["t"]
    k, L0, L = d["sig_k"]["value"], d["sig_L0"]["value"], table.test_loss
    rise = float(_expit(k * (L0 - L.min())) - _expit(k * (L0 - L.max())))
    assert d["sig_rise"]["value"] == pytest.approx(rise, abs=1e-12)
    assert (rise >= 0.5) is identified and d["sig_c_identified"] is identified
    if identified:
        assert "sig_c_unidentified" not in d and 0.5 < d["sig_c"]["lo"] < d["sig_c"]["value"] < d["sig_c"]["hi"] < 1
        assert d["sig_c"]["hi"] - d["sig_c"]["lo"] > 0.01
    else:
        assert rise < 0.01 and d["sig_k"]["value"] == pytest.approx(1e-3, rel=1e-6)
        assert (d["sig_c"]["lo"], d["sig_c"]["hi"]) == (0.5, 1.0) and "cover 0% of" in d["sig_c_unidentified"]


def test_ceiling_rule_by_hand():
    ok = downstream.ceiling_identified
    assert ok(0.8, 5, [0.7] * 60 + [0.1] * 40, [5] * 100) == (True, None)
    assert ok(0.8, 5, [0.7] * 40 + [0.1] * 60, [5] * 100)[0] is False     # most replicates do not
    assert ok(0.8, 2, [0.7] * 100, [5] * 100)[0] is False                  # 2 runs past the midpoint
    assert ok(0.4, 5, [0.7] * 100, [5] * 100)[0] is False                  # under half the rise
    assert ok(0.8, 5, [0.7] * 50 + [np.nan] * 50, [5] * 50 + [np.nan] * 50) == (True, None)   # failed fits left out
