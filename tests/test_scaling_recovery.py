"""Parameter recovery on runs simulated from the paper's speech law on the paper's grid
(5 sizes x D/N in {2, 4, 8, 10, 20, 32, 64, 100}), with 1-2% multiplicative noise."""

import numpy as np
import pytest

from slmjax.analysis.scaling import FitOptions, analyse, approach3, laws, simulate
from slmjax.analysis.scaling import bootstrap as bs

SPEECH = {k: v for k, v in laws.PAPER_LAWS["speech"].items() if k not in ("rn", "rd")}
TRUTH = {"alpha": 0.25, "beta": 0.24, "a": 0.24 / 0.49}


@pytest.mark.parametrize("noise,seed", [(0.01, 11), (0.02, 12)])
def test_truth_inside_95_intervals(noise, seed):
    t = simulate.simulate_table(law=SPEECH, noise=noise, seed=seed)
    assert len(t) == 40
    res, _ = analyse(t, FitOptions(bootstrap=300, huber_bootstrap=40, seed=seed, n_refine=16, holdout=0.2))
    vp, hub = res["approach3"]["vp"], res["approach3"]["huber"]
    for k in ("alpha", "beta", "a"):
        s = vp["allocation"]["a"] if k == "a" else vp["params"][k]
        assert s["lo"] <= TRUTH[k] <= s["hi"], (k, s)
        assert s["n_ok"] == vp["replicates"] == 300
        # The paper's objective lands inside the same interval (its own bootstrap is smaller).
        h = hub["allocation"]["a"] if k == "a" else hub["params"][k]
        assert s["lo"] <= h["value"] <= s["hi"], (k, h)


def _coverage(sims, reps, noise, seed0=1000):
    truth = np.array([TRUTH["alpha"], TRUTH["beta"], TRUTH["a"]])
    hits = np.zeros(3)
    for s in range(sims):
        t = simulate.simulate_table(law=SPEECH, noise=noise, seed=seed0 + s)
        lN, lD, L = np.log(t.n_params), np.log(t.tokens), t.test_loss
        P = approach3.vp_bootstrap(lN, lD, L, bs.resample_weights(len(L), reps, seed=s), workers=2)
        q = np.stack([P[:, 3], P[:, 4], P[:, 4] / (P[:, 3] + P[:, 4])], 1)
        lo, hi = np.quantile(q, [0.025, 0.975], axis=0)
        hits += (lo <= truth) & (truth <= hi)
    return hits / sims


def test_coverage_quick():
    # 10 simulations: P(<= 7 hits | 95% coverage) is about 1%.
    cov = _coverage(10, 150, 0.015)
    assert np.all(cov >= 0.8), cov


@pytest.mark.slow
@pytest.mark.parametrize("noise", [0.01, 0.02])
def test_coverage_about_95_percent(noise):
    cov = _coverage(200, 400, noise)
    print(f"coverage at noise {noise}: alpha, beta, a = {cov}")
    # 200 simulations: a binomial 95% band around 0.95 is about [0.92, 0.98].
    assert np.all((cov >= 0.91) & (cov <= 0.99)), cov
