"""The downstream bootstrap over the benchmark items the runs share: item files read from a sweep
root, per-replicate accuracies against float64 loops, and intervals calibrated against the spread
of fits over fresh item sets drawn from a known population."""

import json

import numpy as np
import pytest

from slmjax.analysis.scaling import bootstrap as bs
from slmjax.analysis.scaling import fit, items, simulate
from slmjax.analysis.scaling.errors import FitInputError
from slmjax.analysis.scaling.sweep import read_sweep
from slmjax.analysis.scaling.table import build_table

HEADER = "item\ttype\tfrequency\tn_pairs\tmean\tsum\tmean_eos\n"


def test_statistic_matches_float64_loops():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 3, (4, 9)) / 2.0           # outcomes 0, 0.5, 1
    groups = np.array(list("aaabbbbcc"), dtype=object)
    W = rng.integers(0, 4, (5, 9)).astype(float)
    W[:, [0, 3, 7]] += 1                                   # every type drawn at least once
    got_mean = items.statistic(values, groups, "mean", W)
    got_macro = items.statistic(values, groups, "macro", W)
    for r in range(5):
        for k in range(4):
            want = sum(W[r, i] * values[k, i] for i in range(9)) / sum(W[r])
            assert got_mean[r, k] == pytest.approx(want, rel=1e-12)
            per = []
            for g in "abc":
                idx = [i for i in range(9) if groups[i] == g]
                per.append(sum(W[r, i] * values[k, i] for i in idx) / sum(W[r, i] for i in idx))
            assert got_macro[r, k] == pytest.approx(sum(per) / 3, rel=1e-12)
    # without weights: each item once
    assert items.statistic(values, groups, "mean")[2] == pytest.approx(values[2].mean())


def test_draws_keep_each_type_and_differ_by_task():
    it = items.ItemScores("b", "macro", np.array(list("aaabbbbcc"), dtype=object), np.zeros((2, 9)))
    V = items.draw(it, 50, 0, "sblimp")
    assert V.shape == (50, 9)
    for g, size in (("a", 3), ("b", 4), ("c", 2)):
        assert np.all(V[:, it.groups == g].sum(1) == size)
    plain = items.ItemScores("b", "mean", it.groups, it.values)
    Vm = items.draw(plain, 50, 0, "swuggy")
    assert np.all(Vm.sum(1) == 9) and not np.all(Vm[:, :3].sum(1) == 3)
    assert not np.array_equal(items.draw(plain, 50, 0, "ssc"), Vm)
    assert np.array_equal(items.draw(plain, 50, 0, "swuggy"), Vm)


def _run(root, rid, N, D, loss, acc, item_rows=None, bench="sblimp_dev", metric="macro"):
    """A completed run whose final step's scores.json has ``acc`` as its sblimp headline, and
    (when given) its items file with ``item_rows`` (key, type, outcome)."""
    wd = root / rid
    step = wd / "zeroshot" / "100"
    step.mkdir(parents=True)
    (wd / "run.json").write_text(json.dumps({
        "run_id": rid, "n_params": N, "tokens": D, "steps": 100, "unique_tokens": D,
        "flops_per_token": {"6n": 6 * N}, "status": "completed", "final_test_loss": loss}))
    (step / "scores.json").write_text(json.dumps({
        "headline_convention": "mean",
        "headline": {"sblimp": {"benchmark": bench, "metric": metric, "accuracy": acc,
                               "n_items": len(item_rows or ROWS)}}}))
    if item_rows is not None:
        (step / "items").mkdir()
        (step / "items" / f"{bench}.tsv").write_text(HEADER + "".join(
            f'["{k}"]\t{t}\t\t2\t{v!r}\t0.5\t0.5\n' for k, t, v in item_rows))


ROWS = [("i1", "a", 1.0), ("i2", "a", 0.5), ("i3", "b", 0.0), ("i4", "b", 1.0), ("i5", "b", 1.0)]


def _macro(rows):
    a = [v for _, t, v in rows if t == "a"]
    b = [v for _, t, v in rows if t == "b"]
    return (sum(a) / len(a) + sum(b) / len(b)) / 2


def _grid(root, rows_of=lambda i: ROWS, skip=None):
    i = 0
    for N in (2e7, 8e7, 3e8):
        for r in (4, 20, 100):
            rows = rows_of(i)
            _run(root, f"r{i}", N, r * N, 2 + 10 / r, _macro(rows), None if i == skip else rows)
            i += 1


def test_sweep_reads_each_runs_items_aligned_by_key(tmp_path):
    # every run lists its items in another order; one run scored another outcome on i3
    def rows_of(i):
        rows = ROWS[i % 5:] + ROWS[:i % 5]
        return [(k, t, 0.5 if (i == 4 and k == "i3") else v) for k, t, v in rows]
    _grid(tmp_path, rows_of)
    t = read_sweep(str(tmp_path))
    it = t.items["sblimp"]
    assert it.stat == "macro" and it.benchmark == "sblimp_dev" and it.n_items == 5
    order = [list(t.run_id).index(f"r{i}") for i in range(9)]
    want = np.array([[v for _, _, v in sorted(rows_of(i))] for i in range(9)])
    first = sorted(range(5), key=lambda j: rows_of(0)[j][0])   # r0's key order is ROWS's
    assert list(it.groups) == ["a", "a", "b", "b", "b"]
    np.testing.assert_array_equal(it.values[order][:, first], want[:, first])
    assert not any("redraws runs only" in s for s in t.notes)
    # at unit weights the items give each run's scores.json accuracy
    acc = t.acc["sblimp"][0]
    np.testing.assert_allclose(items.statistic(it.values, it.groups, "macro"), acc, rtol=1e-12)
    assert t.subset([0, 2]).items["sblimp"].values.shape == (2, 5)


def test_a_run_without_items_leaves_the_task_to_the_run_bootstrap_with_a_note(tmp_path):
    _grid(tmp_path, skip=3)
    t = read_sweep(str(tmp_path))
    assert "sblimp" not in t.items
    (note,) = [s for s in t.notes if "redraws runs only" in s]
    assert note == ("downstream sblimp: the bootstrap redraws runs only, not items: run r3: no "
                    "items/sblimp_dev.tsv (scored before slmjax-eval wrote item outcomes: slmjax-eval "
                    "run on that step again writes them from its per_file/ tables)")


def test_items_that_do_not_give_the_accuracy_are_not_used(tmp_path):
    _grid(tmp_path)
    sj = tmp_path / "r5" / "zeroshot" / "100" / "scores.json"
    obj = json.loads(sj.read_text())
    obj["headline"]["sblimp"]["accuracy"] = 0.9
    sj.write_text(json.dumps(obj))
    t = read_sweep(str(tmp_path))
    assert "sblimp" not in t.items
    assert any("run r5: items/sblimp_dev.tsv does not give scores.json's macro accuracy 0.9" in s
               for s in t.notes)


def test_runs_scored_on_different_items_are_not_redrawn_by_item(tmp_path):
    _grid(tmp_path, rows_of=lambda i: ROWS if i != 7 else ROWS[:4] + [("i6", "b", 1.0)])
    t = read_sweep(str(tmp_path))
    assert "sblimp" not in t.items
    assert any("scored on different items" in s for s in t.notes)


def test_a_malformed_items_file_is_a_note_not_a_traceback(tmp_path):
    _grid(tmp_path)
    (tmp_path / "r2" / "zeroshot" / "100" / "items" / "sblimp_dev.tsv").write_text(
        HEADER + '["i1"]\ta\t\t2\tnot-a-number\t0.5\t0.5\n')
    t = read_sweep(str(tmp_path))
    assert any("run r2: items/sblimp_dev.tsv unreadable (line 2 holds a value that is not a number)" in s
               for s in t.notes)


# --- calibration: the item bootstrap's spread against the spread over fresh item sets ----------

N_RUNS, N_ITEMS = 12, 300


def _population(seed):
    """Per-run true accuracies on an exact power law in compute, and a generator of item sets:
    each item has a difficulty shared by all runs (outcomes are correlated across runs), and each
    run's outcome on it is drawn once."""
    C = np.geomspace(1e17, 1e20, N_RUNS)
    p = 0.55 * (C / C[0]) ** 0.04                          # 0.55 -> 0.74
    logit = np.log(p / (1 - p))

    def item_set(rng):
        d = rng.normal(0.0, 1.2, N_ITEMS)
        q = 1 / (1 + np.exp(-(logit[:, None] + d[None, :])))
        return (rng.random((N_RUNS, N_ITEMS)) < q).astype(float)
    return C, item_set


def _envelope_gamma(C, acc):
    """gamma of Q = q0 C^gamma through the runs more accurate than every cheaper one (float64)."""
    best, keep = -np.inf, []
    for i in np.argsort(C):
        if acc[i] > best:
            best = acc[i]
            keep.append(i)
    return np.polyfit(np.log(C[keep]), np.log(acc[keep]), 1)[0] if len(keep) >= 3 else np.nan


def test_redrawn_items_spread_each_runs_accuracy_as_fresh_item_sets_do():
    """Runs fixed, items redrawn: each run's accuracy and the runs' mean accuracy (which moves
    with the shared item difficulty) spread as over fresh item sets from the population."""
    C, item_set = _population(0)
    rng = np.random.default_rng(1)
    fresh = np.array([item_set(rng).mean(1) for _ in range(400)])        # (sets, runs)
    sd_run, sd_mean = fresh.std(0), fresh.mean(1).std()
    for k in range(3):
        X = item_set(np.random.default_rng(100 + k))
        it = items.ItemScores("set", "mean", np.full(N_ITEMS, "", object), X)
        A = items.replicate_accuracies(it, 400, k, "t")                 # (reps, runs)
        assert 0.75 < np.median(A.std(0) / sd_run) < 1.3
        assert 0.7 < A.mean(1).std() / sd_mean < 1.4


def _fit(X, C, rows, mode, seed):
    for i, r in enumerate(rows):
        r["acc_t"], r["n_t"] = X[i].mean(), N_ITEMS
    table = build_table(rows, "sim", min_sizes=1, min_budgets=1, min_runs=1)
    table.items = {"t": items.ItemScores("set", "mean", np.full(N_ITEMS, "", object), X)}
    W = bs.resample_weights(N_RUNS, 300, seed)
    opt = fit.FitOptions(bootstrap=300, workers=1, sigmoid=False, seed=seed, downstream_bootstrap=mode)
    return fit._downstream(table, table.test_loss, C, W, opt, 1, {})[0]["t"]


def test_item_bootstrap_gamma_spread_matches_fresh_item_sets():
    C, item_set = _population(0)
    rng = np.random.default_rng(1)
    sd_true = np.nanstd([_envelope_gamma(C, item_set(rng).mean(1)) for _ in range(400)])
    rows = simulate.simulate_rows(law="speech", noise=0.01, seed=3, n_items=N_ITEMS)[:N_RUNS]
    ratios, shared_ratios, both_ratios = [], [], []
    for k in range(4):
        X = item_set(np.random.default_rng(100 + k))
        t = _fit(X, C, rows, "items", k)
        assert t["gamma"]["value"] == pytest.approx(_envelope_gamma(C, X.mean(1)), rel=1e-9)
        assert t["bootstrap"] == "the 300 set items all runs share (redrawn once per replicate); runs fixed"
        ratios.append(t["gamma"]["se"] / sd_true)
        both, runs = _fit(X, C, rows, "both", k), _fit(X, C, rows, "runs", k)
        shared = _fit(X, C, rows, "shared", k)
        assert both["bootstrap"].startswith("runs and the 300 set items") and runs["bootstrap"] == "runs"
        assert shared["bootstrap"].startswith("runs, and the shift of every run's accuracy by the 300")
        assert (both["gamma"]["value"] == runs["gamma"]["value"] == t["gamma"]["value"]
                == shared["gamma"]["value"])
        assert both["gamma"]["se"] > max(runs["gamma"]["se"], t["gamma"]["se"]) * 0.9
        shared_ratios.append(shared["gamma"]["se"] / sd_true)
        both_ratios.append(both["gamma"]["se"] / sd_true)
    assert 0.7 < np.mean(ratios) < 1.5, ratios
    # shared: runs redrawn, the items' common shift added; the runs' own item noise is counted
    # once (in their scatter), so it measures gamma's spread where both counts it twice
    assert 0.75 < np.mean(shared_ratios) < 1.3 < np.mean(both_ratios), (shared_ratios, both_ratios)


def test_runs_mode_ignores_items_and_matches_a_table_without_them():
    C, item_set = _population(0)
    rows = simulate.simulate_rows(law="speech", noise=0.01, seed=3, n_items=N_ITEMS)[:N_RUNS]
    X = item_set(np.random.default_rng(7))
    with_items = _fit(X, C, rows, "runs", 2)
    table = build_table(rows, "sim", min_sizes=1, min_budgets=1, min_runs=1)      # rows hold X's accuracies
    opt = fit.FitOptions(bootstrap=300, workers=1, sigmoid=False, seed=2)
    plain = fit._downstream(table, table.test_loss, C, bs.resample_weights(N_RUNS, 300, 2), opt, 1, {})[0]["t"]
    assert with_items["gamma"] == plain["gamma"] and plain["bootstrap"] == "runs"
    with pytest.raises(FitInputError, match="--downstream_bootstrap=rows must be one of shared, both, runs, items"):
        fit.FitOptions(downstream_bootstrap="rows").validate()


def test_replicate_accuracies_are_the_statistic_of_the_drawn_counts():
    rng = np.random.default_rng(3)
    X = rng.integers(0, 3, (5, 250)) / 2.0
    for stat, groups in (("mean", np.full(250, "", object)),
                         ("macro", np.array(["a", "b", "c", "d", "e"] * 50, dtype=object))):
        it = items.ItemScores("b", stat, groups, X)
        V = items.draw(it, 230, 4, "t")          # more than one chunk
        assert V.shape == (230, 250) and np.all(V.sum(1) == 250)
        A = items.replicate_accuracies(it, 230, 4, "t")
        for r in (0, 99, 100, 229):
            w = V[r]
            if stat == "mean":
                want = [(w * X[k]).sum() / w.sum() for k in range(5)]
            else:
                want = [np.mean([(w[groups == g] * X[k][groups == g]).sum() / w[groups == g].sum()
                                 for g in "abcde"]) for k in range(5)]
            np.testing.assert_allclose(A[r], want, rtol=1e-12)


def test_each_task_is_judged_by_its_own_items_file(tmp_path):
    """sBLIMP's items present, sWUGGY's not: sBLIMP is redrawn by item and sWUGGY's note names
    its own missing file."""
    _grid(tmp_path)
    for sj in tmp_path.glob("r*/zeroshot/100/scores.json"):
        obj = json.loads(sj.read_text())
        obj["headline"] = {"swuggy": {"benchmark": "swuggy_dev", "metric": "all", "accuracy": 0.7,
                                      "n_items": 40}, **obj["headline"]}
        sj.write_text(json.dumps(obj))
    t = read_sweep(str(tmp_path))
    assert set(t.items) == {"sblimp"}
    (note,) = [s for s in t.notes if "redraws runs only" in s]
    assert note.startswith("downstream swuggy: the bootstrap redraws runs only, not items: run r0: "
                           "no items/swuggy_dev.tsv")


def test_a_type_of_one_item_is_not_redrawn_by_item(tmp_path):
    """A redraw stratified by type always draws a lone item of its type: that type's mean would
    never move (slmjax-eval gives such a macro no interval); the task is left to the run bootstrap."""
    rows = ROWS[:2] + [("i3", "b", 0.0)]                   # type b: one item
    _grid(tmp_path, rows_of=lambda i: rows)
    t = read_sweep(str(tmp_path))
    assert "sblimp" not in t.items
    (note,) = [s for s in t.notes if "redraws runs only" in s]
    assert note.endswith("sblimp_dev: not estimable: a bootstrap stratified by type needs at least 2 "
                         "items of every type; 1 of 2 types have fewer: b")


def test_a_headline_convention_that_is_not_a_name_is_a_note(tmp_path):
    _grid(tmp_path)
    sj = tmp_path / "r1" / "zeroshot" / "100" / "scores.json"
    obj = json.loads(sj.read_text())
    obj["headline_convention"] = ["mean"]
    sj.write_text(json.dumps(obj))
    t = read_sweep(str(tmp_path))
    assert "sblimp" not in t.items
    assert any("run r1: items/sblimp_dev.tsv has no ['mean'] outcomes" in s for s in t.notes)


def test_report_says_what_downstream_replicates_redraw(tmp_path):
    from slmjax.analysis.scaling import report
    _grid(tmp_path)
    table = read_sweep(str(tmp_path))
    for mode, want in (("shared", "move every run's accuracy by the shift of their mean"),
                       ("both", "also redraw the benchmark items"), ("items", "the runs held fixed"),
                       ("runs", "redraw runs only (--downstream_bootstrap=runs)")):
        res, _ = fit.analyse(table, fit.FitOptions(bootstrap=20, huber_bootstrap=0, n_refine=1, workers=1,
                                                   sigmoid=False, downstream_bootstrap=mode))
        md = report.render(res, {})
        assert want in md
        # the one task is skipped (no run above chance on 5 items): no empty list of redraws
        assert "replicates redraw: ." not in md


def test_slmjax_fit_on_a_sweep_root_redraws_its_items(tmp_path):
    """A sweep root as slmjax-eval leaves it (scores.json + items/) through slmjax-fit: fit.json
    says each task redrew runs and items, and the report says so."""
    from slmjax.analysis.scaling import cli
    n_items, i = 200, 0
    (tmp_path / "sweep").mkdir()
    for N in (2e7, 8e7, 3e8):
        for r in (4, 20, 100):
            right = 110 + 4 * i + (3 if i % 2 else 0)            # rises with compute, off a line
            rows = [(f"i{j:03d}", "ab"[j % 2], 1.0 if j < right else 0.0) for j in range(n_items)]
            _run(tmp_path / "sweep", f"r{i}", N, r * N, 2 + 10 / r, _macro(rows), rows)
            i += 1
    res = cli.main(str(tmp_path / "sweep"), str(tmp_path / "out"), bootstrap=40, huber_bootstrap=0,
                   n_refine=4, workers=1)
    d = res["downstream"]["sblimp"]
    assert d["bootstrap"] == ("runs, and the shift of every run's accuracy by the 200 sblimp_dev items "
                              "all runs share (redrawn once per replicate, stratified by type)")
    assert d["c1"]["lo"] < d["c1"]["value"] < d["c1"]["hi"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Each task's replicates redraw: sblimp: runs, and the shift of every run's accuracy" in text


def test_shared_shift_moves_each_run_by_the_mean_change_of_the_scored_runs():
    acc = np.array([0.6, np.nan, 0.7, 0.8])
    A = np.array([[0.62, np.nan, 0.71, 0.83],     # shifts +0.02, +0.01, +0.03: mean +0.02
                  [0.50, np.nan, 0.70, 0.78]])    # -0.10, 0, -0.02: mean -0.04
    got = items.shared_shift(A, acc)
    np.testing.assert_allclose(got[:, [0, 2, 3]], [[0.62, 0.72, 0.82], [0.56, 0.66, 0.76]], rtol=1e-12)
    assert np.isnan(got[:, 1]).all()


def test_shared_shift_spreads_the_runs_mean_as_fresh_item_sets_do():
    """The level every run shares moves as over fresh item sets; each run's own item noise is
    not added (it is in the runs' scatter): the runs' differences from their mean stay put."""
    C, item_set = _population(0)
    rng = np.random.default_rng(1)
    sd_mean = np.array([item_set(rng).mean(1).mean() for _ in range(400)]).std()
    X = item_set(np.random.default_rng(100))
    it = items.ItemScores("set", "mean", np.full(N_ITEMS, "", object), X)
    S = items.shared_shift(items.replicate_accuracies(it, 400, 0, "t"), X.mean(1))
    assert 0.7 < S.mean(1).std() / sd_mean < 1.4
    np.testing.assert_allclose(S - S.mean(1, keepdims=True),
                               np.broadcast_to(X.mean(1) - X.mean(1).mean(), S.shape), atol=1e-12)
