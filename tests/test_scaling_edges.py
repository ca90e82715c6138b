"""Poorly constrained and degenerate run tables: fits stay in their search region or the input is
refused in one line."""

import numpy as np
import pytest

from slmjax.analysis.scaling import approach3, laws, simulate, vpfit
from slmjax.analysis.scaling import bootstrap as bs

SPEECH = {k: v for k, v in laws.PAPER_LAWS["speech"].items() if k not in ("rn", "rd")}


@pytest.mark.parametrize("seed", [33, 42])
def test_vp_point_fit_stays_inside_the_grid_its_replicates_search(seed):
    """D/N in {2, 4, 8} with 5% noise leaves one exponent free; the Nelder-Mead polish used to walk
    it to alpha or beta ~ 20-40 (A or B = 1e140 or inf) while every replicate stopped near 1.5."""
    t = simulate.simulate_table(law=SPEECH, noise=0.05, seed=seed, ratios=(2, 4, 8))
    lN, lD, L = np.log(t.n_params), np.log(t.tokens), t.test_loss
    hi = vpfit.ALPHA_GRID[1]
    raw = vpfit.vp_fit(lN, lD, L, polish=False)
    fit = vpfit.vp_fit(lN, lD, L)
    p = fit.params[0]
    assert np.all(np.isfinite(p)) and np.all((p[3:] > 0) & (p[3:] <= hi)), p
    assert fit.sse[0] <= raw.sse[0]
    boot = approach3.vp_bootstrap(lN, lD, L, bs.resample_weights(len(L), 20, seed=0), workers=1)
    assert np.all(boot[:, 3:] <= hi)
    # Independent check of the reported SSE: residuals in float64 at the reported parameters.
    assert fit.sse[0] == pytest.approx(np.sum((L - laws.chinchilla(t.n_params, t.tokens, *p)) ** 2), rel=1e-9)
