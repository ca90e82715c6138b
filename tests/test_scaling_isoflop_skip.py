"""Approach 2 skipped: the one line says which IsoFLOP budgets had the 3 model sizes a parabola
needs, and what is missing. It said 'the grid does not bracket the optimum' even when only one
budget had 3 sizes, so there was no second profile to bracket anything."""

import numpy as np

from slmjax.analysis.scaling import isoflop, laws
from slmjax.analysis.scaling.fit import FitOptions, analyse
from slmjax.analysis.scaling.table import build_table

SPEECH = laws.PAPER_LAWS["speech"]


def _rows(groups):
    rows = []
    for C, sizes in groups:
        for n in sizes:
            d = C / (6 * n)
            L = laws.chinchilla(n, d, *(SPEECH[k] for k in ("E", "A", "B", "alpha", "beta")))
            rows.append(dict(run_id=f"c{C:.0e}_n{n:.0e}", n_params=n, tokens=d, test_loss=float(L), budget=C))
    return rows


def test_one_budget_with_three_sizes_is_named_not_called_unbracketed():
    # By hand: 1e18 has sizes 2e7, 5e7, 1e8 (3); 3e18 and 1e19 have 2 each.
    rows = _rows([(1e18, [2e7, 5e7, 1e8]), (3e18, [5e7, 1e8]), (1e19, [1e8, 3e8])])
    res, _ = analyse(build_table(rows, "sim"), FitOptions(bootstrap=20, huber_bootstrap=0, n_refine=1,
                                                          workers=1, sigmoid=False))
    assert res["approach2"] == {"skipped": (
        "1 of the 3 IsoFLOP budgets has runs of 3 or more model sizes (C = 1e+18); a parabola per budget "
        "needs runs of 3 sizes and the power law N*(C) needs 2 such budgets (sizes per budget: "
        "C = 1e+18: 3, C = 3e+18: 2, C = 1e+19: 2)")}


def test_unbracketed_budgets_are_named():
    # Three budgets of 3+ sizes. The law's optimum N*(C) = G (C/6)^a (SCALING.md) is 3.5e7, 1.1e8 and
    # 3.3e8 at 1e18, 1e19, 1e20: above every size sampled at the first two, inside 1e8-3.2e9 at 1e20.
    al, be, A, B = (SPEECH[k] for k in ("alpha", "beta", "A", "B"))
    n_opt = [(al * A / (be * B)) ** (1 / (al + be)) * (C / 6) ** (be / (al + be)) for C in (1e18, 1e19, 1e20)]
    assert n_opt[0] > 4e6 and n_opt[1] > 4e7 and 1e8 < n_opt[2] < 3.2e9
    rows = _rows([(1e18, [1e6, 2e6, 4e6]), (1e19, [1e7, 2e7, 4e7]), (1e20, [1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9])])
    t = build_table(rows, "sim")
    r = isoflop.isoflop_fit(t.n_params, t.tokens, t.test_loss, 6 * t.n_params * t.tokens, t.budget)
    assert [p["inside"] for p in r["profiles"]] == [False, False, True]
    msg = isoflop.skip_reason(t.n_params, t.tokens, t.budget, r)
    assert msg == ("3 of the 3 IsoFLOP budgets have runs of 3 or more model sizes (C = 1e+18, 1e+19, 1e+20), "
                   "but only 1 with a minimum inside their sampled sizes (C = 1e+20); the power law N*(C) "
                   "needs 2 (the grid does not bracket the optimum at the others)")


def test_without_budgets_the_sizes_with_two_token_counts_are_counted():
    # No budget column: profiles are interpolated along each size between its runs. By hand: sizes
    # 2e7 and 5e7 have 2 token counts each, 1e8 one; so no compute level has 3 sizes.
    N = np.array([2e7, 2e7, 5e7, 5e7, 1e8])
    D = np.array([4e8, 8e8, 1e9, 2e9, 2e9])
    L = laws.chinchilla(N, D, *(SPEECH[k] for k in ("E", "A", "B", "alpha", "beta")))
    r = isoflop.isoflop_fit(N, D, L, 6 * N * D)
    assert r is None
    assert isoflop.skip_reason(N, D, None, r) == (
        "no IsoFLOP budgets in the table, and 2 of its 3 model sizes have runs at 2 or more token counts, "
        "reaching 0 common compute level(s); interpolated profiles need 3 such sizes at one compute level, "
        "at 2 or more levels")
