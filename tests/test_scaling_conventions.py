"""Compute conventions other than C = 6ND, against references computed here in float64."""

import numpy as np
import pytest
from scipy import optimize

from slmjax.analysis.scaling import isoflop, laws, simulate

SPEECH = {k: v for k, v in laws.PAPER_LAWS["speech"].items() if k not in ("rn", "rd")}


def test_interpolated_isoflop_profiles_follow_the_compute_convention():
    """Without budget labels, IsoFLOP profiles at C = (6N + k) D must hold C fixed under that
    convention: the exponent of N*(C) is the law's own under it (0.389 here), not the 6ND one (0.490)."""
    t = simulate.simulate_table(law=SPEECH, noise=0.0, sizes=np.geomspace(1e6, 1e9, 7),
                                ratios=np.geomspace(2, 5000, 14))
    N, D, L = t.n_params, t.tokens, t.test_loss
    k = 6 * 8 * 512 * 2050.0          # an attention term per token, constant over sizes
    r = isoflop.isoflop_fit(N, D, L, (6 * N + k) * D)
    p = SPEECH

    def n_star(c):   # exact minimiser of the law along D = c / (6N + k)
        f = lambda x: laws.chinchilla(np.exp(x), c / (6 * np.exp(x) + k), p["E"], p["A"], p["B"],
                                      p["alpha"], p["beta"])
        return np.exp(optimize.minimize_scalar(f, bounds=(np.log(1e5), np.log(1e10)), method="bounded",
                                               options=dict(xatol=1e-10)).x)

    cs = np.array([q["C"] for q in r["profiles"] if q["inside"]])
    assert len(cs) >= 5
    a_ref = np.polyfit(np.log(cs), np.log([n_star(c) for c in cs]), 1)[0]
    assert a_ref == pytest.approx(0.389, abs=0.002)
    assert r["a"] == pytest.approx(a_ref, abs=0.005)
