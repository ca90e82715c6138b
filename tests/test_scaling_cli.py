"""slmjax-fit end to end on a CSV: fit.json, plots and report.md."""

import json
import os
import subprocess
import sys

import pytest

from slmjax.analysis.scaling import FitInputError, FitOptions, analyse, cli, fit, laws, simulate
from slmjax.analysis.scaling import report
from slmjax.analysis.scaling.table import build_table


def test_cli_end_to_end(tmp_path):
    law = dict(laws.PAPER_LAWS["speech"])
    rows = simulate.simulate_rows(law=law, noise=0.01, seed=4, epochs=(3, 6),
                                  tasks={"sblimp": (0.68, 3.0, 2.6), "tsc": (0.9, 2.5, 2.5)})
    csv = str(tmp_path / "runs.csv")
    simulate.write_csv(rows, csv)
    out = str(tmp_path / "fit")
    res = cli.main(csv, out, bootstrap=60, huber_bootstrap=10, n_refine=4, workers=1,
                   target_acc={"sblimp": 65}, target_flops=(1e21,))
    with open(os.path.join(out, "fit.json")) as f:
        fj = json.load(f)
    for key in ("approach3", "approach2", "approach1", "data_constrained", "downstream", "holdout",
                "diagnostics", "sensitivity", "table", "options", "timing"):
        assert key in fj
    assert fj["table"]["runs"] == 50 and fj["table"]["multi_epoch_runs"] == 10
    assert fj["data_constrained"]["R*_D"]["n_ok"] == 60
    ds = fj["downstream"]["sblimp"]
    assert ds["gamma"]["value"] > 0 and ds["ratio_text_over_ours"]["lo"] is not None
    assert ds["compute_to_target"]["value"] > 0 and ds["compute_to_target"]["target"] == 0.65
    assert fj["options"]["target_acc"] == {"sblimp": 0.65}    # 65 read as percent
    c1e21 = [r for r in fj["approach3"]["vp"]["at_compute"] if r["C"] == 1e21][0]
    assert c1e21["N_opt"]["lo"] < c1e21["N_opt"]["value"] < c1e21["N_opt"]["hi"]
    for png in ("loss_vs_compute", "allocation", "downstream_vs_loss", "downstream_vs_compute",
                "residuals", "bootstrap"):
        path = os.path.join(out, fj["figures"][png])
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    md = open(os.path.join(out, "report.md")).read()
    for needle in ("## Reporting checklist", "**Held-out validation**", "![loss_vs_compute](loss_vs_compute.png)",
                   "| check | flagged | detail |", "R*_N", "sblimp"):
        assert needle in md
    import csv
    with open(os.path.join(out, "runs.csv")) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 50 and {"epochs", "C_6N", "C_6N_nonemb", "C_6N_attn", "acc_tsc", "n_tsc"} <= set(table[0])
    assert sorted({round(float(r["epochs"]), 6) for r in table}) == [1.0, 3.0, 6.0]
    assert not [f for f in os.listdir(out) if f.endswith(".tmp") or f.startswith(".")]
    assert res["approach3"]["vp"]["replicates"] == 60


def _table():
    rows = simulate.simulate_rows(noise=0.01, tasks={"sblimp": (0.68, 3.0, 2.6), "tsc": (0.9, 2.5, 2.5)})
    return build_table(rows, "sim")


def test_target_accuracy_as_fraction_or_percent():
    t = _table()
    assert fit._target_fractions(cli._parse_targets(["sblimp=0.65", "TSC=72.5"]), t.acc) == \
        {"sblimp": 0.65, "tsc": 0.725}


@pytest.mark.parametrize("items,message", [
    (["sblimp=150"], "--target_acc sblimp=150 must be a fraction in (0.5, 1) or a percent in (50, 100)"),
    (["sblimp=2"], "--target_acc sblimp=2 must be a fraction in (0.5, 1) or a percent in (50, 100)"),
    (["sblimp=0.5"], "--target_acc sblimp=0.5 must be"),
    (["tsc=1"], "--target_acc tsc=1 must be"),
    (["tsc=100"], "--target_acc tsc=100 must be"),
    (["nosuchtask=0.6"], "--target_acc: no task 'nosuchtask' in the run table (it has sblimp, tsc)"),
    (["sblimp=0.6", "sblimp=0.7"], "--target_acc item 'sblimp=0.7' is not task=accuracy (one item per task)"),
    (["sblimp"], "--target_acc item 'sblimp' is not task=accuracy"),
])
def test_bad_target_accuracy_one_clear_line(items, message):
    # Small fit settings: the old code ran the whole fit before going wrong.
    opt = dict(bootstrap=20, huber_bootstrap=0, n_refine=1, workers=1, sigmoid=False)
    with pytest.raises(FitInputError) as e:
        analyse(_table(), FitOptions(target_acc=cli._parse_targets(items), **opt))
    assert message in str(e.value)


def test_cli_negative_seed_one_line(tmp_path):
    csv = str(tmp_path / "runs.csv")
    simulate.write_csv(simulate.simulate_rows(), csv)
    p = subprocess.run([sys.executable, "-m", "slmjax.analysis.scaling.cli", f"--runs={csv}",
                        f"--out={tmp_path / 'out'}", "--seed=-1"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))})
    assert p.returncode == 1 and p.stderr.strip() == "slmjax-fit: --seed=-1 must be 0 or more"
    assert not (tmp_path / "out").exists()


def test_repeat_terms_from_both_first_stages():
    """The second stage runs on the variable-projection law and on the paper objective's (as the
    paper fitted it); on exact data both recover R*_N = 31 and R*_D = 25, each with intervals."""
    law = dict(laws.PAPER_LAWS["speech"])
    rows = simulate.simulate_rows(law=law, noise=0.0, epochs=(2, 4, 8, 16, 40), ratios=(2, 4, 8, 20, 64, 100))
    res, _ = analyse(build_table(rows, "exact"), FitOptions(bootstrap=20, huber_bootstrap=6, n_refine=4, workers=1))
    dc = res["data_constrained"]
    for d, replicates in ((dc, 20), (dc["paper_objective"], 6)):
        assert d["R*_N"]["value"] == pytest.approx(law["rn"], rel=1e-2)
        assert d["R*_D"]["value"] == pytest.approx(law["rd"], rel=1e-2)
        assert d["R*_D"]["n_ok"] == replicates and d["n_runs"] == 5 * 5
    md = report.render(res, {})
    assert "first stage by variable projection: R*_N" in md and "first stage by paper objective: R*_N" in md
    assert "Compute-optimal allocation (paper objective):" in md



@pytest.mark.parametrize("out", ["taken", "taken/sub"])
def test_unusable_out_one_clear_line_before_fitting(tmp_path, monkeypatch, out):
    """--out naming a file (or a folder under one) stopped with a FileExistsError traceback after the
    whole analysis had run."""
    csv = str(tmp_path / "runs.csv")
    simulate.write_csv(simulate.simulate_rows(), csv)
    (tmp_path / "taken").write_text("x")
    monkeypatch.setattr(cli, "analyse", lambda *a, **k: pytest.fail("fitted before checking --out"))
    with pytest.raises(FitInputError) as e:
        cli.main(csv, str(tmp_path / out), bootstrap=20)
    assert f"{tmp_path / 'taken'} is not a directory" in str(e.value) and "\n" not in str(e.value)


def test_out_the_file_system_refuses_is_one_line_before_fitting(tmp_path, monkeypatch):
    """A folder name too long for the file system passed the old check (its parent is writable) and
    failed after the whole analysis; a real write probe finds it first."""
    csv = str(tmp_path / "runs.csv")
    simulate.write_csv(simulate.simulate_rows(), csv)
    monkeypatch.setattr(cli, "analyse", lambda *a, **k: pytest.fail("fitted before checking --out"))
    out = str(tmp_path / ("x" * 300))
    with pytest.raises(FitInputError) as e:
        cli.main(csv, out, bootstrap=20)
    assert str(e.value).startswith(f"--out={out}: {out} cannot be written (OSError: [Errno 36]")


def test_unreadable_reference_one_clear_line_before_fitting(tmp_path, monkeypatch):
    """A mistyped --reference path stopped the run only once the downstream stage (after every
    Approach 3 bootstrap) or the plots read it."""
    t = build_table(simulate.simulate_rows(tasks={"sblimp": (0.7, 3.0, 2.6)}), "sim")
    monkeypatch.setattr(fit.vpfit, "vp_fit", lambda *a, **k: pytest.fail("fitted before reading --reference"))
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(FitInputError, match="nope.csv: reference table not readable"):
        analyse(t, FitOptions(bootstrap=20, reference=missing))


def test_figures_of_an_earlier_analysis_do_not_survive(tmp_path):
    """Writing into an --out used before: a figure this table does not support (no accuracy column,
    so no downstream plots) must not be left there from the earlier table."""
    from slmjax.analysis.scaling import plots
    stale = [tmp_path / "downstream_vs_loss.png", tmp_path / "downstream_vs_compute.png"]
    for f in stale:
        f.write_bytes(b"earlier analysis")
    t = build_table(simulate.simulate_rows(noise=0.01), "sim")
    _, p = analyse(t, FitOptions(bootstrap=20, huber_bootstrap=0, n_refine=1, workers=1))
    made = plots.write_all(p, str(tmp_path), {})
    assert "downstream_vs_loss" not in made and not any(f.exists() for f in stale)
    assert sorted(os.listdir(tmp_path)) == sorted(made.values())


def test_allocation_band_is_labelled_with_the_interval_level(tmp_path, monkeypatch):
    from slmjax.analysis.scaling import plots
    labels = {}

    def keep_labels(fig, out, name):
        labels[name] = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        return name

    monkeypatch.setattr(plots, "_save", keep_labels)
    t = build_table(simulate.simulate_rows(noise=0.01), "sim")
    _, p = analyse(t, FitOptions(bootstrap=20, huber_bootstrap=0, n_refine=1, workers=1, level=0.8))
    plots.allocation(p, str(tmp_path))
    assert "80% bootstrap band" in labels["allocation.png"] and "95% bootstrap band" not in labels["allocation.png"]


def test_infinite_target_flops_one_clear_line(tmp_path, monkeypatch):
    """--target_flops=inf passed the 'positive' check: the report got an N*(C) row of inf, D*(C) inf
    and tokens per parameter nan, and the plots' compute grid (up to the largest target) all inf past its first point."""
    csv = str(tmp_path / "runs.csv")
    simulate.write_csv(simulate.simulate_rows(), csv)
    monkeypatch.setattr(cli, "analyse", lambda *a, **k: pytest.fail("fitted with an infinite target"))
    with pytest.raises(FitInputError) as e:
        cli.main(csv, str(tmp_path / "out"), bootstrap=20, target_flops=(1e21, float("inf")))
    assert str(e.value) == "--target_flops=(1e+21, inf) must be positive and finite"
    assert not (tmp_path / "out").exists()


def test_nonemb_without_the_column_names_the_flag(tmp_path):
    """The line named '--n_params=nonemb', a flag slmjax-fit does not have (it is --n_param)."""
    rows = simulate.simulate_rows()
    for r in rows:
        del r["n_params_nonemb"]
    with pytest.raises(FitInputError) as e:
        analyse(build_table(rows, "sim"), FitOptions(bootstrap=20, n_param="nonemb"))
    assert str(e.value) == "--n_param=nonemb needs an n_params_nonemb value for every run"
    assert "n_param" in cli.FLAGS and "n_params" not in cli.FLAGS
