"""The bootstrap's resampling unit: whole runs, each fitting stage keeping its own run count."""

import numpy as np

from slmjax.analysis.scaling import FitOptions, analyse, laws, simulate
from slmjax.analysis.scaling.table import build_table


def test_every_replicate_keeps_the_multi_epoch_runs_of_the_second_stage():
    """With 2 multi-epoch runs among 42, resampling all runs together left a replicate without any
    multi-epoch run with probability (40/42)^42 = 13%: 12% of the R* replicates came back NaN and
    the intervals silently rested on the rest. Stratified, every replicate has its 2."""
    rows = simulate.simulate_rows(law=dict(laws.PAPER_LAWS["speech"]), noise=0.005, seed=1, epochs=(10,),
                                  sizes=np.geomspace(2e7, 8e8, 5))
    single = [r for r in rows if r["unique_tokens"] == r["tokens"]]
    multi = [r for r in rows if r["unique_tokens"] < r["tokens"]][:2]
    t = build_table(single + multi, "two_multi")
    assert len(t) == 42 and t.multi_epoch.sum() == 2
    reps = 60
    res, _ = analyse(t, FitOptions(bootstrap=reps, huber_bootstrap=0, n_refine=2, workers=1, sigmoid=False))
    dc = res["data_constrained"]
    assert dc["R*_N"]["n_ok"] == dc["R*_D"]["n_ok"] == reps
    assert res["approach3"]["vp"]["params"]["alpha"]["n_ok"] == reps


def test_failed_replicates_are_counted_and_named_in_the_report():
    """NaN is a failed replicate, left out; +inf is a replicate's value (D*(C) of a law with A = 0),
    kept in order: the old code dropped it too and gave the quartiles of {1, 2, 3}: 1.5 and 2.5."""
    from slmjax.analysis.scaling.bootstrap import summarise
    from slmjax.analysis.scaling.report import _iv
    s = summarise(2.0, [1.0, np.nan, 3.0, np.inf, 2.0], level=0.5)
    # order statistics 1, 2, 3, inf at positions (4 - 1) q = 0.75, 1.5, 2.25
    assert (s["n_ok"], s["n_inf"], s["n"], s["lo"], s["median"], s["hi"], s["se"]) == (4, 1, 5, 1.75, 2.5, np.inf, None)
    assert _iv(s) == "2 [1.75, inf] (4 of 5 replicates, 1 of them infinite)"
    assert _iv(summarise(2.0, [1.0, 3.0, 2.0, np.inf], level=0.5)) == "2 [1.75, inf] (1 of 4 replicates infinite)"
    assert _iv(summarise(2.0, [1.0, 3.0, 2.0], level=0.5)) == "2 [1.5, 2.5]"
    assert _iv(summarise(2.0, [np.nan, 1.0])) == "2 (1 of 2 replicates)"
    none = summarise(2.0, [1.0, None, 3.0, 2.0], level=0.5)
    assert (none["n_ok"], none["n_inf"], none["n"], none["lo"], none["hi"]) == (3, 0, 4, 1.5, 2.5)
    assert none["se"] == 1.0


def test_percentiles_are_order_statistics_with_infinities_in_place():
    """Hand-computed: a percentile between two finite order statistics is finite even when some
    replicates are infinite, one interpolating towards an infinite neighbour is that infinity, and
    one on an order statistic is it exactly (np.quantile gives NaN for inf - inf and inf * 0)."""
    from slmjax.analysis.scaling.bootstrap import quantiles, summarise
    s = summarise(0.0, [8.0, np.inf, 1, 2, 3, 4, 5, 6, 7], level=0.5)   # positions 2, 4, 6 of 9
    assert (s["lo"], s["median"], s["hi"], s["n_inf"]) == (3.0, 5.0, 7.0, 1)   # old: 2.75, 4.5, 6.25
    s = summarise(0.0, [3.0, -np.inf, 1.0, 2.0], level=0.5)            # -inf, 1, 2, 3 at 0.75, 1.5, 2.25
    assert (s["lo"], s["median"], s["hi"]) == (-np.inf, 1.5, 2.25)
    x = [1.0, np.inf, np.inf]
    assert quantiles(x, [0.0, 0.25, 0.5, 0.75, 1.0]).tolist() == [1.0, np.inf, np.inf, np.inf, np.inf]
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.quantile(x, 0.75)) and np.isnan(np.quantile([1.0, 2.0, np.inf], 1.0 / 2))
    assert quantiles([1.0, 2.0, np.inf], [0.5]).tolist() == [2.0]
    # Against float64 np.quantile on finite stand-ins (inf -> +-1e300, order kept) wherever both
    # neighbouring order statistics are finite; inf wherever one of them is.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.lognormal(size=95), np.full(4, np.inf), [-np.inf]])
    rng.shuffle(x)
    qs = np.linspace(0, 1, 201)
    got, sub = quantiles(x, qs), np.quantile(np.clip(x, -1e300, 1e300), qs)
    h = 99 * qs
    lo_inf, hi_inf = h < 1, h > 95
    assert np.array_equal(got[~lo_inf & ~hi_inf], sub[~lo_inf & ~hi_inf])
    assert (got[lo_inf] == -np.inf).all() and (got[hi_inf] == np.inf).all()
    # Columns (the plots' bands), NaN dropped per column; finite data give np.nanquantile's bits.
    X = rng.normal(size=(50, 3))
    X[[0, 7], 1] = np.nan
    assert np.array_equal(quantiles(X, [0.025, 0.5, 0.975]), np.nanquantile(X, [0.025, 0.5, 0.975], axis=0))


def _boot_with_zero_A(n=40, zero=4):
    """Bootstrap rows of the speech law, ``zero`` of them with A = 0 (as NNLS leaves it)."""
    p = laws.PAPER_LAWS["speech"]
    rng = np.random.default_rng(1)
    boot = np.array([[p["E"], p["A"], p["B"], p["alpha"], p["beta"]]] * n) * rng.uniform(0.9, 1.1, (n, 5))
    boot[:zero, 1] = 0.0
    return np.array([p["E"], p["A"], p["B"], p["alpha"], p["beta"]]), boot


def test_replicates_with_A_zero_widen_the_D_opt_interval():
    """A = 0 in 10% of replicates: their D*(C) and tokens per parameter are +inf and N*(C) is 0.
    The old summary dropped them and reported a finite 97.5% limit of the other 90%."""
    from slmjax.analysis.scaling import approach3
    point, boot = _boot_with_zero_A()
    with np.errstate(divide="ignore"):
        r = approach3.summarise_fit(point, boot, [1e21], 0.95)["at_compute"][0]
        finite_hi = np.quantile(approach3.derived(boot[4:], [1e21])["D_opt"][:, 0], 0.975)
    D, tpp, N = r["D_opt"], r["tokens_per_param"], r["N_opt"]
    assert D["hi"] == np.inf and tpp["hi"] == np.inf and finite_hi < np.inf
    assert (D["n_ok"], D["n_inf"], D["n"], D["se"]) == (40, 4, 40, None)
    assert N["lo"] == 0.0 and N["n_inf"] == 0 and N["se"] is not None
    assert np.isfinite(D["lo"]) and np.isfinite(D["median"]) and np.isfinite(r["L_opt"]["hi"])
    with np.errstate(divide="ignore"):
        bands = approach3.bands(point, boot, np.geomspace(1e18, 1e22, 5), 0.95)
    assert bands["D_opt"]["hi"] == [np.inf] * 5          # np.nanquantile gave NaN (inf - inf)
    assert all(0 < v < np.inf for v in bands["D_opt"]["lo"])


def test_infinite_band_is_clipped_to_the_axis(tmp_path):
    import matplotlib.pyplot as plt

    from slmjax.analysis.scaling import approach3, plots
    point, boot = _boot_with_zero_A()
    cg = np.geomspace(1e18, 1e22, 12)
    with np.errstate(divide="ignore"):
        b = approach3.bands(point, boot, cg, 0.95)
    fig, ax = plt.subplots()
    ax.plot(cg, b["D_opt"]["value"])
    ax.set(xscale="log", yscale="log")
    plots._band(ax, cg, b["N_opt"]["lo"], b["D_opt"]["hi"])          # 0 below, +inf above
    y0, y1 = ax.get_ylim()
    verts = np.concatenate([p.vertices for p in ax.collections[0].get_paths()])
    assert np.isfinite([y0, y1]).all() and 0 < y0 and np.isclose(verts[:, 1].max(), y1)
    plt.close(fig)
    p = {"C_grid": cg, "bands": b, "level": 0.95, "N": np.array([1e7, 1e8]), "D": np.array([1e9, 1e10])}
    assert plots.allocation(p, str(tmp_path)) == "allocation.png"


def test_fit_json_is_standard_json_with_infinite_limits(tmp_path):
    """A table with D/N in {2, 4, 8}: NNLS sets A = 0 in some bootstrap replicates, so D*(C) has an
    infinite upper limit. fit.json writes it as "inf" (standard JSON; the old writer made it null,
    from a finite limit before that), ``load_fit`` reads it back as inf, the report prints it."""
    import json

    from slmjax.analysis.scaling import cli, fitjson
    csv = str(tmp_path / "runs.csv")
    simulate.write_csv(simulate.simulate_rows(ratios=(2, 4, 8), noise=0.01, seed=3), csv)
    out = str(tmp_path / "fit")
    res = cli.main(csv, out, bootstrap=60, huber_bootstrap=5, n_refine=2, workers=1, sigmoid=False)
    text = open(f"{out}/fit.json").read()

    def no_constants(c):
        raise ValueError(c)
    fj = json.loads(text, parse_constant=no_constants)       # no NaN / Infinity tokens
    assert json.loads(json.dumps(fj, allow_nan=False)) == fj
    D = fj["approach3"]["vp"]["at_compute"][-1]["D_opt"]
    assert D["n_inf"] > 0.025 * D["n_ok"], "the table should leave A = 0 in over 2.5% of replicates"
    assert D["hi"] == "inf" and isinstance(D["lo"], float)
    back = fitjson.load_fit(f"{out}/fit.json")
    Db = back["approach3"]["vp"]["at_compute"][-1]["D_opt"]
    assert Db == res["approach3"]["vp"]["at_compute"][-1]["D_opt"] and Db["hi"] == np.inf
    assert back["options"] == fj["options"] and back["table"] == fj["table"]
    md = open(f"{out}/report.md").read()
    assert f", inf] ({D['n_inf']} of {D['n']} replicates infinite) |" in md
    assert fitjson.dumps_fit({"x": float("nan"), "y": [np.float64("-inf")]}) == '{\n "x": null,\n "y": [\n  "-inf"\n ]\n}'


def test_bootstrap_replicates_do_not_depend_on_the_worker_count():
    """analyse() hands the replicates the single-epoch runs' columns of the weight matrix, a strided
    array; the pool's pickling laid it out C-contiguous, so 1 and 2 workers summed in another order
    (fit.json differed in the 13th digit, the repeat terms in the 6th)."""
    from slmjax.analysis.scaling import approach3
    from slmjax.analysis.scaling import bootstrap as bs

    rng = np.random.default_rng(0)
    n = 24
    lN, lD = np.log(rng.uniform(1e7, 1e9, n)), np.log(rng.uniform(1e9, 1e11, n))
    L = 1.7 + 300 * np.exp(-0.3 * lN) + 1000 * np.exp(-0.35 * lD) + rng.normal(0, 0.01, n)
    W = bs.resample_weights(n + 6, 40, 0, np.full(n + 6, np.nan))[:, np.arange(n + 6) % 5 != 0]
    assert not W.flags["C_CONTIGUOUS"]
    one, two = (approach3.vp_bootstrap(lN, lD, L, W, workers, chunk=20) for workers in (1, 2))
    assert np.array_equal(one, two, equal_nan=True)
