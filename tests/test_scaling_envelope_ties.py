"""Envelopes (best accuracy per FLOP for downstream gamma, lowest loss per FLOP for Kaplan's L(C))
when runs share one compute value exactly, as the runs of an IsoFLOP budget do when D = C / 6N."""

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
