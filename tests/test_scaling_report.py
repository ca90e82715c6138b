"""report.md sentences against the options and numbers they describe."""

from slmjax.analysis.scaling import FitOptions, analyse, report, simulate
from slmjax.analysis.scaling.table import build_table


def test_interval_level_is_printed_as_given():
    """--level=0.975 computed 97.5% intervals (quantiles 0.0125 and 0.9875) while the report, the
    checklist and the held-out check called them '98%' (and --level=0.999 '100%')."""
    t = build_table(simulate.simulate_rows(noise=0.01), "sim")
    res, _ = analyse(t, FitOptions(bootstrap=20, huber_bootstrap=0, n_refine=1, workers=1, sigmoid=False,
                                   level=0.975))
    md = report.render(res, {})
    assert "Intervals: 97.5% percentile bootstrap over runs" in md
    assert "- **Intervals**: 97.5% percentile bootstrap over whole runs" in md
    assert "inside the 97.5% prediction interval" in md
    held = next(d for d in res["diagnostics"] if d["check"] == "held-out prediction intervals miss")
    assert "inside the 97.5% prediction interval" in held["detail"]
    assert "98%" not in md
