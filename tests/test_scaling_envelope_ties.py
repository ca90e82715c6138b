"""Envelopes (best accuracy per FLOP for downstream gamma, lowest loss per FLOP for Kaplan's L(C))
when runs share one compute value, as the runs of an IsoFLOP budget do when D = C / 6N: exactly, or
but for float rounding (frontier.COMPUTE_RTOL)."""

import numpy as np
import pytest

from slmjax.analysis.scaling import downstream, isoflop


def test_runs_at_equal_compute_enter_the_envelopes_best_first():
    # Three runs at 1e18 FLOPs (accuracy 0.55, 0.60, 0.58 in table order), two at 2e18, then one
    # each at 4e18 and 8e18. At equal compute only the best run belongs to the envelope: the 0.55 run
    # is beaten by a run that cost no more. By hand: acc front 1 (1e18), 4 (2e18), 5, 6.
    C = np.array([1e18, 1e18, 1e18, 2e18, 2e18, 4e18, 8e18])
    acc = np.array([0.55, 0.60, 0.58, 0.59, 0.62, 0.63, 0.65])
    front = downstream.acc_envelope(C, acc, np.ones(7))
    assert front.tolist() == [1, 4, 5, 6]
    g, lq, f = downstream.gamma_fit(C, acc, np.ones(7))
    ref = np.polyfit(np.log(C[[1, 4, 5, 6]]), np.log(acc[[1, 4, 5, 6]]), 1)
    assert (g, lq) == pytest.approx(tuple(ref), rel=1e-12)
    # A bootstrap replicate that leaves out the best run at 1e18 takes the next best there (0.58).
    w = np.array([1, 0, 2, 1, 1, 1, 1.0])
    assert downstream.acc_envelope(C, acc, w).tolist() == [2, 4, 5, 6]

    # Loss: 3.0, 2.9, 2.95 at 1e18; 2.8, 2.85 at 2e18. By hand: front 1, 3, 5, 6.
    L = np.array([3.0, 2.9, 2.95, 2.8, 2.85, 2.7, 2.6])
    assert isoflop.envelope(C, L).tolist() == [1, 3, 5, 6]
    N = np.array([1e7, 2e7, 4e7, 2e7, 4e7, 6e7, 9e7])
    k = isoflop.kaplan_fit(N, C, L)
    ref = np.polyfit(np.log(C[[1, 3, 5, 6]]), np.log(L[[1, 3, 5, 6]]), 1)
    assert k["gamma"] == pytest.approx(-ref[0], rel=1e-12)


def test_compute_equal_but_for_float_rounding_is_one_compute():
    """C = 6ND evaluated in another order, or read back from a CSV with 13 digits, differs by an ulp
    or ~1e-13: the same compute. A worse run whose C came out 1 ulp lower than a better run's stayed
    on both envelopes as "cheaper" (the old front was 1, 0, 7, 4, 3, 5, 6)."""
    C = np.array([1e18, np.nextafter(1e18, 0), float("1.0000000000003e18"), 2e18,
                  2e18 * (1 - 2e-12), 4e18, 8e18, 1e18 * (1 + 2e-9)])
    acc = np.array([0.60, 0.58, 0.59, 0.62, 0.61, 0.63, 0.65, 0.605])
    # By hand: 1e18 (runs 0, 1, 2) -> 0; 1e18 (1 + 2e-9) is another compute (> 1e-9) and more
    # accurate -> 7; 2e18 (runs 3, 4) -> 3; then 5, 6.
    want = [0, 7, 3, 5, 6]
    assert downstream.acc_envelope(C, acc, np.ones(8)).tolist() == want
    g, lq, _ = downstream.gamma_fit(C, acc, np.ones(8))
    ref = np.polyfit(np.log(C[want]), np.log(acc[want]), 1)
    assert (g, lq) == pytest.approx(tuple(ref), rel=1e-12)
    L = 3.0 - acc
    assert isoflop.envelope(C, L).tolist() == want
    k = isoflop.kaplan_fit(np.geomspace(1e7, 1e9, 8), C, L)
    assert k["gamma"] == pytest.approx(-np.polyfit(np.log(C[want]), np.log(L[want]), 1)[0], rel=1e-12)
    # Ties are anchored at a level's smallest C, not chained: runs 6e-10 apart make new levels
    # every 1e-9, not one level.
    from slmjax.analysis.scaling import frontier
    assert frontier.compute_levels(1e18 * (1 + 6e-10 * np.arange(5))).tolist() == [0, 0, 1, 1, 2]


def test_real_isoflop_grid_front_does_not_depend_on_the_order_of_6ND():
    """Llama 3's IsoFLOP runs (tests/data): 6 * N * D equals the budget column to 1 ulp, differently
    per run and per order of the product. The loss front had 17, 15 or 13 runs for 10 budgets
    (gamma 0.0363, 0.0371, 0.0365) depending on the order; it is the best run of each budget that
    beats every cheaper budget, whatever the order (reference: grouped by the budget column)."""
    import csv
    import os
    with open(os.path.join(os.path.dirname(__file__), "data", "llama3_isoflops.csv")) as f:
        rows = list(csv.DictReader(f))
    N, D, L, B = (np.array([float(r[k]) for r in rows]) for k in ("params", "tokens", "loss", "budget"))
    ref, best = [], np.inf
    for b in np.unique(B):
        i = np.nonzero(B == b)[0]
        j = int(i[np.argmin(L[i])])
        if L[j] < best:
            ref.append(j)
            best = L[j]
    want = -np.polyfit(np.log(B[ref]), np.log(L[ref]), 1)[0]
    for C in (6 * N * D, N * D * 6, 6 * D * N):
        assert len(np.unique(C)) > len(np.unique(B))   # the rounding is there
        assert isoflop.envelope(C, L).tolist() == ref
        assert isoflop.kaplan_fit(N, C, L)["gamma"] == pytest.approx(want, rel=1e-12)
