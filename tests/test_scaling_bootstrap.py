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
    from slmjax.analysis.scaling.bootstrap import summarise
    from slmjax.analysis.scaling.report import _iv
    s = summarise(2.0, [1.0, np.nan, 3.0, np.inf, 2.0], level=0.5)
    # quartiles of the three finite replicates {1, 2, 3}: 1.5 and 2.5
    assert (s["n_ok"], s["n"], s["lo"], s["median"], s["hi"]) == (3, 5, 1.5, 2.0, 2.5)
    assert _iv(s) == "2 [1.5, 2.5] (3 of 5 replicates)"
    assert _iv(summarise(2.0, [1.0, 3.0, 2.0], level=0.5)) == "2 [1.5, 2.5]"
    assert _iv(summarise(2.0, [np.nan, 1.0])) == "2 (1 of 2 replicates)"


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
