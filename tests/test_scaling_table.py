"""Run tables: CSV and sweep-root readers, validation with one clear line per problem."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from slmjax.analysis.scaling import FitInputError, read_csv, read_sweep
from slmjax.analysis.scaling import simulate

HERE = os.path.dirname(__file__)


def _write(tmp_path, rows, name="runs.csv"):
    path = str(tmp_path / name)
    simulate.write_csv(rows, path)
    return path


def _rows():
    return simulate.simulate_rows(noise=0.0, tasks={"sblimp": (0.7, 3.0, 2.6)})


def test_csv_roundtrip_columns(tmp_path):
    t = read_csv(_write(tmp_path, _rows()))
    assert len(t) == 40
    np.testing.assert_allclose(t.flops["6N"], 6 * t.n_params * t.tokens)
    np.testing.assert_allclose(t.flops["6N_nonemb"], 6 * t.n_params_nonemb * t.tokens)
    assert set(t.flops) == {"6N", "6N_nonemb", "6N_attn"}
    assert np.all(t.epochs == 1.0)
    acc, n = t.acc["sblimp"]
    assert np.all((acc > 0.4) & (acc < 0.8)) and np.all(n == 2000)


def test_runs_csv_written_by_the_fit_reads_back_with_its_attention_flops(tmp_path):
    """slmjax-fit writes runs.csv with C_6N, C_6N_nonemb, C_6N_attn: fitting that file again keeps
    the attention FLOPs (C_6N_attn was not read as the flops column)."""
    t = read_csv(_write(tmp_path, _rows()))
    again = read_csv(_write(tmp_path, t.rows(), name="again.csv"))
    assert set(again.flops) == {"6N", "6N_nonemb", "6N_attn"}
    np.testing.assert_allclose(again.flops["6N_attn"], t.flops["6N_attn"], rtol=1e-12)


def test_a_c_column_of_6nd_is_not_taken_for_attention_flops(tmp_path):
    """Papers' tables give C = 6ND: such a column holds no attention term, so --flops=6N_attn must
    not fit on it as if it did (it falls back to n_layers, dim and seq_len, or is absent)."""
    rows = _rows()
    for r in rows:
        r.pop("flops"), r.pop("n_layers", None), r.pop("dim", None), r.pop("seq_len", None)
        r["C"] = 6.0 * float(r["n_params"]) * float(r["tokens"])
    t = read_csv(_write(tmp_path, rows))
    assert "6N_attn" not in t.flops
    assert any("6ND" in n for n in t.notes), t.notes


@pytest.mark.parametrize("edit,message", [
    (lambda r: r[3].update(test_loss="nan"), "test_loss is NaN"),
    (lambda r: r[5].update(tokens=-1e9), "tokens is -1e+09"),
    (lambda r: r[5].update(n_params=0), "n_params is 0"),
    (lambda r: r[2].update(test_loss="abc"), "test_loss 'abc' is not a number"),
    (lambda r: r[7].update(run_id=r[6]["run_id"]), "appears twice"),
    (lambda r: r[7].update(unique_tokens=r[7]["tokens"] * 2), "unique_tokens"),
])
def test_bad_rows_one_clear_line(tmp_path, edit, message):
    rows = _rows()
    edit(rows)
    with pytest.raises(FitInputError) as e:
        read_csv(_write(tmp_path, rows))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_attention_flops_from_shape_columns(tmp_path):
    rows = _rows()
    for r in rows:
        del r["flops"]
        r.update(n_layers=6, dim=512, seq_len=2050)
    t = read_csv(_write(tmp_path, rows))
    # Hand formula: (6 N + 12 L H Q T / 2) D with H Q = dim (causal attention counted once).
    np.testing.assert_allclose(t.flops["6N_attn"], (6 * t.n_params + 12 * 6 * 512 * 2050 / 2) * t.tokens)


def test_one_model_size_and_too_few_budgets(tmp_path):
    rows = [r for r in _rows() if r["n_params"] == simulate.PAPER_SIZES["s85m"][0]]
    with pytest.raises(FitInputError, match="only 1 model size "):
        read_csv(_write(tmp_path, rows))
    rows = [r for r in _rows() if r["tokens"] / r["n_params"] in (2, 4)]
    with pytest.raises(FitInputError, match="only 2 token budgets"):
        read_csv(_write(tmp_path, rows))


def test_missing_column_and_experiments(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("run_id,n_params,tokens\na,1,2\n")
    with pytest.raises(FitInputError, match="missing column 'test_loss'"):
        read_csv(str(p))
    with pytest.raises(FitInputError, match="holds 2 experiments"):
        read_csv(os.path.join(HERE, "data", "llama3_isoflops.csv"))
    t = read_csv(os.path.join(HERE, "data", "llama3_isoflops.csv"), experiment="llama_3__raw_loss")
    assert len(t) == 133 and np.isfinite(t.budget).all()


def test_schedule_not_ending_at_D_is_excluded(tmp_path):
    rows = _rows()
    rows[0]["tokens_seen"] = rows[0]["tokens"] * 0.5
    rows[1]["tokens_seen"] = rows[1]["tokens"]
    t = read_csv(_write(tmp_path, rows))
    assert len(t) == 39 and t.excluded[0][0] == rows[0]["run_id"] and "schedule ended" in t.excluded[0][1]


def _workdir(root, rid, N, D, loss, status="completed", seen=None, zs_step=100, steps=100, scores=None):
    wd = root / rid
    wd.mkdir()
    run = {"run_id": rid, "n_params": N, "n_params_nonemb": N * 0.99, "tokens": D, "steps": steps,
           "flops_per_token": {"6n": 6 * N, "6n_attn": 6 * N * 1.2}, "unique_tokens": D, "epochs": 1,
           "status": status, "final_test_loss": loss}
    (wd / "run.json").write_text(json.dumps(run))
    with open(wd / "metrics.jsonl", "w") as f:
        f.write(json.dumps({"step": 50, "tokens_seen": D / 2, "loss": loss + 1}) + "\n")
        f.write("{corrupt line\n")
        f.write(json.dumps({"step": steps, "tokens_seen": D if seen is None else seen, "test_loss": loss}) + "\n")
    if scores is not None:
        (wd / "zeroshot" / str(zs_step)).mkdir(parents=True)
        (wd / "zeroshot" / str(zs_step) / "scores.json").write_text(json.dumps(scores))


def _grid(root, scores=None):
    """Runs r1..r9: three sizes x D/N of 4, 20, 100, loss 2 + 10 / (D/N); ``scores(D/N)`` -> scores.json."""
    i = 0
    for N in (2e7, 8e7, 3e8):
        for r in (4, 20, 100):
            i += 1
            _workdir(root, f"r{i}", N, r * N, 2 + 10 / r, scores=scores and scores(r))


def test_sweep_root(tmp_path):
    _grid(tmp_path, scores=lambda r: {"sblimp": {"accuracy": 0.5 + r / 1000, "n_items": 6300}})
    _workdir(tmp_path, "failed", 2e7, 1e9, 3.0, status="failed")
    _workdir(tmp_path, "short", 2e7, 1e9, 3.0, seen=5e8)
    _workdir(tmp_path, "early", 2e7, 2e9, 3.0, zs_step=10, scores={"sblimp": 0.9})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    t = read_sweep(str(tmp_path))
    assert len(t) == 10
    reasons = dict(t.excluded)
    assert reasons["failed"] == "status failed" and "schedule ended" in reasons["short"]
    assert "unreadable" in reasons["broken"]
    acc, n = t.acc["sblimp"]
    j = list(t.run_id).index("r1")
    assert acc[j] == pytest.approx(0.504) and n[j] == 6300
    assert np.isnan(acc[list(t.run_id).index("early")])      # not the final checkpoint's scores
    assert any("early" in s for s in t.notes)
    np.testing.assert_allclose(t.flops["6N_attn"], 7.2 * t.n_params * t.tokens)
    assert not any("held-out tokens" in s for s in t.notes)   # none records a count: alike


def test_sweep_root_notes_final_losses_over_different_heldout_tokens(tmp_path):
    for i, n_eval in enumerate((4096, 4096, None)):
        _workdir(tmp_path, f"r{i}", 2e7 * (i + 1), 4e8, 3.0 - i / 10)
        if n_eval is not None:
            run = json.loads((tmp_path / f"r{i}" / "run.json").read_text())
            (tmp_path / f"r{i}" / "run.json").write_text(json.dumps({**run, "final_test_tokens": n_eval}))
    notes = [s for s in read_sweep(str(tmp_path), min_sizes=1, min_budgets=1, min_runs=1).notes
             if "held-out tokens" in s]
    assert len(notes) == 1 and "r0: 4096" in notes[0] and "r2: ?" in notes[0]


def test_cli_bad_table_prints_one_line(tmp_path):
    rows = _rows()
    rows[3]["test_loss"] = float("nan")
    path = _write(tmp_path, rows)
    p = subprocess.run([sys.executable, "-m", "slmjax.analysis.scaling.cli", f"--runs={path}",
                        f"--out={tmp_path / 'out'}"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.path.dirname(HERE)})
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "test_loss is NaN" in lines[0] and lines[0].startswith("slmjax-fit:")
    assert not (tmp_path / "out").exists()


def test_sweep_root_reads_slmjax_eval_headline(tmp_path):
    """scores.json as slmjax-eval writes it: the headline wins over the per-convention task rows."""
    scores = {"format_version": 1, "headline_convention": "mean",
              "headline": {"sblimp": {"benchmark": "sblimp_dev", "metric": "macro", "accuracy": 0.61,
                                      "ci95": [0.6, 0.62], "n_items": 6300},
                           "tsc": {"benchmark": "tsc", "metric": "accuracy", "accuracy": 0.78,
                                   "ci95": [0.76, 0.8], "n_items": 1871}},
              "tasks": {"sblimp_dev": {"task": "sblimp", "conventions": {
                  "mean": [{"metric": "item", "accuracy": 0.1, "n_items": 6300}]}}}}
    _grid(tmp_path, scores=lambda r: scores)
    t = read_sweep(str(tmp_path))
    acc, n = t.acc["sblimp"]
    assert np.allclose(acc, 0.61) and np.all(n == 6300)
    acc, n = t.acc["tsc"]
    assert np.allclose(acc, 0.78) and np.all(n == 1871)


def test_sweep_root_run_within_one_epoch_saw_D_unique_tokens(tmp_path):
    """run.json's unique_tokens is the data size: a run of D < U tokens is single-epoch with U = D."""
    _grid(tmp_path)
    for i in range(1, 10):
        _edit_run(tmp_path / f"r{i}", unique_tokens=1e11)
    t = read_sweep(str(tmp_path))
    np.testing.assert_array_equal(t.unique_tokens, t.tokens)
    assert not t.multi_epoch.any()


def _edit_run(wd, **fields):
    """Set (value) or drop (None) fields of wd/run.json."""
    run = json.loads((wd / "run.json").read_text())
    run.update(fields)
    (wd / "run.json").write_text(json.dumps({k: v for k, v in run.items() if v is not None}))


def test_sweep_root_excludes_runs_without_a_finite_test_loss(tmp_path):
    _grid(tmp_path)
    _workdir(tmp_path, "r0", 2e7, 4e8, 3.0)
    _edit_run(tmp_path / "r0", final_test_loss=None)
    (tmp_path / "r0" / "metrics.jsonl").write_text(json.dumps({"step": 100, "tokens_seen": 4e8}) + "\n")
    _workdir(tmp_path, "r10", 2e7, 4e8, float("nan"))
    t = read_sweep(str(tmp_path))
    assert sorted(t.run_id) == [f"r{i}" for i in range(1, 10)]
    assert dict(t.excluded) == {"r0": "no test loss in run.json or metrics.jsonl", "r10": "test loss is nan"}
    np.testing.assert_allclose(t.test_loss[list(t.run_id).index("r2")], 2 + 10 / 20)


def test_sweep_root_files_that_are_not_json_objects(tmp_path):
    """run.json: run excluded; scores.json: downstream ignored; metrics.jsonl row: skipped (no fields)."""
    _grid(tmp_path, scores=lambda r: {"sblimp": 0.6})
    (tmp_path / "r1" / "run.json").write_text("[1, 2]")
    (tmp_path / "r2" / "zeroshot" / "100" / "scores.json").write_text('"0.6"')
    with open(tmp_path / "r3" / "metrics.jsonl", "a") as f:
        f.write("[3.0]\n")
    t = read_sweep(str(tmp_path))
    assert dict(t.excluded) == {"r1": "run.json not a JSON object (a list)"}
    assert "r2: scores.json not a JSON object (a str); downstream ignored" in t.notes
    ids = list(t.run_id)
    assert np.isnan(t.acc["sblimp"][0][ids.index("r2")]) and t.acc["sblimp"][0][ids.index("r3")] == 0.6
    assert t.test_loss[ids.index("r3")] == 2 + 10 / 100


@pytest.mark.parametrize("edit,message", [
    (lambda wd: _edit_run(wd, steps="abc"), "run r5: run.json steps 'abc' is not a number"),
    (lambda wd: _edit_run(wd, tokens=[1]), "run r5: run.json tokens [1] is not a number"),
    (lambda wd: _edit_run(wd, flops_per_token=7), "run r5: run.json flops_per_token 7 is not an object"),
    (lambda wd: open(wd / "metrics.jsonl", "a").write('{"tokens_seen": "abc"}\n'),
     "run r5: metrics.jsonl line 4 tokens_seen 'abc' is not a number"),
])
def test_sweep_root_bad_field_one_clear_line(tmp_path, edit, message):
    _grid(tmp_path)
    edit(tmp_path / "r5")
    with pytest.raises(FitInputError) as e:
        read_sweep(str(tmp_path))
    assert str(e.value) == f"{tmp_path.name} {message}"


def test_percent_accuracy_column(tmp_path):
    rows = _rows()
    for i, r in enumerate(rows):
        r["acc_sblimp"] = 50 + i / 2
    t = read_csv(_write(tmp_path, rows))
    np.testing.assert_allclose(t.acc["sblimp"][0], 0.5 + np.arange(40) / 200)
    assert "acc_sblimp read as percent and divided by 100" in t.notes


@pytest.mark.parametrize("key,value,message", [
    ("acc_sblimp", 1.7, "mixes fractions and percents (run {r0} has {a0:g}, run {rid} has 1.7); use one unit"),
    ("acc_sblimp", "inf", "run {rid}: acc_sblimp is inf (must be in [0, 1], or in (1, 100] as percent)"),
    ("acc_sblimp", -0.1, "run {rid}: acc_sblimp is -0.1 (must be in [0, 1]"),
    ("acc_sblimp", 100.5, "run {rid}: acc_sblimp is 100.5 (must be in [0, 1]"),
    ("n_sblimp", 0, "run {rid}: n_sblimp is 0 (must be a positive number of items)"),
    ("n_sblimp", -5, "run {rid}: n_sblimp is -5 (must be a positive number of items)"),
    ("n_sblimp", "inf", "run {rid}: n_sblimp is inf (must be a positive number of items)"),
])
def test_bad_accuracy_one_clear_line(tmp_path, key, value, message):
    rows = _rows()
    rows[3][key] = value
    with pytest.raises(FitInputError) as e:
        read_csv(_write(tmp_path, rows))
    expected = message.format(rid=rows[3]["run_id"], r0=rows[0]["run_id"], a0=rows[0]["acc_sblimp"])
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_csv_encodings(tmp_path):
    rows = _rows()
    raw = open(_write(tmp_path, rows), "rb").read()
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + raw)
    assert list(read_csv(str(tmp_path / "bom.csv")).run_id) == [r["run_id"] for r in rows]
    lines = raw.split(b"\n")
    lines[3] = b"caf\xe9" + lines[3]    # Latin-1, not UTF-8
    (tmp_path / "latin1.csv").write_bytes(b"\n".join(lines))
    with pytest.raises(FitInputError, match=r"latin1.csv: line 4 is not UTF-8 text \(byte 0xe9\)"):
        read_csv(str(tmp_path / "latin1.csv"))


def test_csv_cells_with_surrounding_spaces(tmp_path):
    """A hand-edited CSV pads cells with spaces: ' 2.5 ' is 2.5, '  ' is blank, ' e1 ' is experiment e1."""
    rows = _rows()
    lines = ["run_id , n_params, tokens , test_loss, n_params_nonemb, experiment, acc_sblimp"]
    for i, r in enumerate(rows):
        v = {k: repr(float(r[k])) for k in ("n_params", "tokens", "test_loss", "n_params_nonemb")}
        ne = "  " if i == 0 else f" {v['n_params_nonemb']}"
        lines.append(f" {r['run_id']} , {v['n_params']} , {v['tokens']},{v['test_loss']} ,{ne}, e1 , ")
    p = tmp_path / "spaced.csv"
    p.write_text("\n".join(lines) + "\n")
    t = read_csv(str(p), experiment="e1")
    assert len(t) == 40 and t.run_id[0] == rows[0]["run_id"]
    assert np.isnan(t.n_params_nonemb[0]) and t.n_params_nonemb[1] == rows[1]["n_params_nonemb"]
    np.testing.assert_array_equal(t.test_loss, [r["test_loss"] for r in rows])
    assert np.isnan(t.acc["sblimp"][0]).all()


def test_csv_two_columns_for_one_field_one_clear_line(tmp_path):
    """'loss' is an alias of test_loss: a table with both must not silently keep the later column."""
    rows = _rows()
    for r in rows:
        r["loss"] = 9.0
    with pytest.raises(FitInputError) as e:
        read_csv(_write(tmp_path, rows))
    assert "'test_loss' and 'loss' both give test_loss" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("scale,what", [(lambda r: 1 / r["tokens"], "per-token FLOPs"),
                                        (lambda r: 1e-15, "petaFLOPs")])
def test_flops_column_in_other_units_one_clear_line(tmp_path, scale, what):
    """The flops column is total training FLOPs (per token x D, at least about 6ND): the same
    column given as FLOPs per token, or in petaFLOPs, put the runs on a wrong compute axis."""
    rows = _rows()
    for r in rows:
        r["flops"] = r["flops"] * scale(r)
    with pytest.raises(FitInputError) as e:
        read_csv(_write(tmp_path, rows))
    assert "flops" in str(e.value) and "times 6ND" in str(e.value) and "\n" not in str(e.value), what


def test_a_flops_column_below_6nd_is_named_in_one_note(tmp_path):
    """6N + attention is at least 6ND per run: a column of 6 N_nonemb D is that convention (and
    --flops=6N_attn falls back to the dims), and a column of forward-only FLOPs (2ND + attention,
    a third of training's) is used as given with one note naming the lowest run."""
    rows = _rows()
    for r in rows:
        r["flops"] = 6.0 * float(r["n_params_nonemb"]) * float(r["tokens"])
    t = read_csv(_write(tmp_path, rows))
    assert "6N_attn" not in t.flops  # these rows give no n_layers, dim, seq_len to count it from
    np.testing.assert_allclose(t.flops["6N_nonemb"], [r["flops"] for r in rows], rtol=1e-12)
    assert [n for n in t.notes if "N_nonemb D" in n], t.notes
    rows = _rows()
    for r in rows:
        r["flops"] = r["flops"] / 3
    t = read_csv(_write(tmp_path, rows, name="fwd.csv"))
    ratio = [r["flops"] / (6.0 * float(r["n_params"]) * float(r["tokens"])) for r in rows]
    low = [n for n in t.notes if "below 6ND" in n]
    assert len(low) == 1 and f"for {len(rows)} of {len(rows)} runs" in low[0], t.notes
    assert f"{min(ratio):.3g} times, run {rows[int(np.argmin(ratio))]['run_id']}" in low[0], low
    assert not [n for n in read_csv(_write(tmp_path, _rows(), name="ok.csv")).notes if "6ND" in n]


def test_sweep_root_two_workdirs_with_one_run_id_named(tmp_path):
    """A copied workdir keeps the run_id in its run.json: the error names both workdirs, not 'rows'
    of a table the user never wrote."""
    _grid(tmp_path)
    (tmp_path / "r1_copy").mkdir()
    (tmp_path / "r1_copy" / "run.json").write_text((tmp_path / "r1" / "run.json").read_text())
    with pytest.raises(FitInputError) as e:
        read_sweep(str(tmp_path))
    msg = str(e.value)
    assert "run_id 'r1'" in msg and "workdirs r1 and r1_copy" in msg and "rows" not in msg and "\n" not in msg


def test_sweep_root_with_experiment_one_clear_line(tmp_path):
    """--experiment picks rows of a CSV; with a sweep root it was dropped without a word and every
    run of the root was fitted (9 here), as if the rows had been selected."""
    from slmjax.analysis.scaling import read_runs
    _grid(tmp_path)
    assert len(read_runs(str(tmp_path))) == 9
    with pytest.raises(FitInputError) as e:
        read_runs(str(tmp_path), experiment="e1")
    assert str(e.value).startswith(f"{tmp_path}: --experiment=e1 picks rows of a CSV's experiment column; "
                                   "a sweep root has none") and "\n" not in str(e.value)


def test_sweep_root_packed_run_D_is_utterance_tokens_C_counts_every_slot(tmp_path):
    """A packed run's rows hold padding: run.json tokens (steps x slots) overstated D by the padding
    share; D is the utterance tokens trained on, the attention-convention compute still every slot."""
    _grid(tmp_path)
    slots = 20 * 2e7                                   # r2: N = 2e7, D/N = 20, run.json tokens 4e8
    # 100 steps of 64 rows: 3.76e8 utterance tokens, 2.4e7 slots (6%) padding; U = 1e8.
    _edit_run(tmp_path / "r2", data={"mode": "packed", "seq_len": 2050}, trained_tokens=3.76e8,
              unique_tokens=1e8, epochs=3.76)
    # An older packed run.json, without trained_tokens: D = epochs x unique_tokens.
    _edit_run(tmp_path / "r5", data={"mode": "packed"}, unique_tokens=2e8, epochs=7.5)
    _edit_run(tmp_path / "r7", data={"mode": "windows"}, trained_tokens=1.0)   # windows: tokens
    t = read_sweep(str(tmp_path))
    assert len(t) == 9                                # the schedule check reads tokens_seen in D's units
    j, k, w = (list(t.run_id).index(r) for r in ("r2", "r5", "r7"))
    assert t.tokens[j] == 3.76e8 and t.epochs[j] == pytest.approx(3.76)       # was 4e8 and 4.0
    assert t.flops["6N_attn"][j] == pytest.approx(7.2 * 2e7 * slots)           # every slot
    assert t.flops["6N"][j] == pytest.approx(6 * 2e7 * 3.76e8)
    assert t.tokens[k] == pytest.approx(7.5 * 2e8) and t.epochs[k] == pytest.approx(7.5)
    assert t.tokens[w] == 4 * 3e8 and t.flops["6N_attn"][w] == pytest.approx(7.2 * 3e8 * 4 * 3e8)
    notes = [s for s in t.notes if "packed run" in s]
    assert len(notes) == 1 and "2 packed run(s) (r2, r5)" in notes[0] and "padding included" in notes[0]
    assert any(s.startswith("r5: run.json has no trained_tokens") for s in t.notes)
