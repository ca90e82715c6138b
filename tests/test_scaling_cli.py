"""slmjax-fit end to end on a CSV: fit.json, plots and report.md."""

import json
import os

from slmjax.analysis.scaling import cli, laws, simulate


def test_cli_end_to_end(tmp_path):
    law = dict(laws.PAPER_LAWS["speech"])
    rows = simulate.simulate_rows(law=law, noise=0.01, seed=4, epochs=(3, 6),
                                  tasks={"sblimp": (0.68, 3.0, 2.6), "tsc": (0.9, 2.5, 2.5)})
    csv = str(tmp_path / "runs.csv")
    simulate.write_csv(rows, csv)
    out = str(tmp_path / "fit")
    res = cli.main(csv, out, bootstrap=60, huber_bootstrap=10, n_refine=4, workers=1,
                   target_acc={"sblimp": 0.65}, target_flops=(1e21,))
    with open(os.path.join(out, "fit.json")) as f:
        fj = json.load(f)
    for key in ("approach3", "approach2", "approach1", "data_constrained", "downstream", "holdout",
                "diagnostics", "sensitivity", "table", "options", "timing"):
        assert key in fj
    assert fj["table"]["runs"] == 50 and fj["table"]["multi_epoch_runs"] == 10
    assert fj["data_constrained"]["R*_D"]["n_ok"] == 60
    ds = fj["downstream"]["sblimp"]
    assert ds["gamma"]["value"] > 0 and ds["ratio_text_over_ours"]["lo"] is not None
    assert ds["compute_to_target"]["value"] > 0
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
