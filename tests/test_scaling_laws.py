"""The paper's arithmetic and the closed forms, against hand-computed float64 values."""

import math

import numpy as np
import pytest

from slmjax.analysis.scaling import laws


def test_paper_speech_allocation_table5():
    p = laws.PAPER_LAWS["speech"]
    al = laws.allocation(p["E"], p["A"], p["B"], p["alpha"], p["beta"])
    # Hand arithmetic: a = 0.24 / 0.49, b = 0.25 / 0.49, G = (0.25*13.9 / (0.24*39.8))^(1/0.49).
    assert al["a"] == pytest.approx(0.24 / 0.49) and round(al["a"], 2) == 0.49
    assert al["b"] == pytest.approx(0.25 / 0.49) and round(al["b"], 2) == 0.51
    G = (0.25 * 13.9 / (0.24 * 39.8)) ** (1 / 0.49)
    assert al["G"] == pytest.approx(G, rel=1e-12)
    n = laws.n_opt(1e21, p["A"], p["B"], p["alpha"], p["beta"])
    d = laws.d_opt(1e21, p["A"], p["B"], p["alpha"], p["beta"])
    assert n == pytest.approx(G * (1e21 / 6) ** (0.24 / 0.49), rel=1e-12)
    assert n == pytest.approx(1.0e9, rel=0.03)          # PAPER.md: N*(1e21) ~ 1.0e9
    assert d == pytest.approx(1.6e11, rel=0.03)         # D* ~ 1.6e11
    assert 6 * n * d == pytest.approx(1e21, rel=1e-12)  # the split spends exactly C


def test_epoch_refit_allocation():
    # Besiroglu et al. 2024: alpha 0.35, beta 0.37 -> a = 0.51.
    al = laws.allocation(1.82, 482.0, 2085.0, 0.35, 0.37)
    assert round(al["a"], 2) == 0.51


def test_optimum_minimises_loss_on_the_isoflop_line():
    p = laws.PAPER_LAWS["speech"]
    C = 3e20
    n_star = laws.n_opt(C, p["A"], p["B"], p["alpha"], p["beta"])
    N = np.geomspace(n_star / 30, n_star * 30, 20001)
    L = laws.chinchilla(N, C / (6 * N), p["E"], p["A"], p["B"], p["alpha"], p["beta"])
    assert N[np.argmin(L)] == pytest.approx(n_star, rel=2e-3)
    assert laws.loss_opt(C, p["E"], p["A"], p["B"], p["alpha"], p["beta"]) == pytest.approx(L.min(), rel=1e-9)


def test_data_constrained_reduces_to_chinchilla_for_one_epoch_and_saturates():
    p = dict(laws.PAPER_LAWS["speech"])
    rn, rd = p.pop("rn"), p.pop("rd")
    N, U = 1e7, 2e9
    assert N < laws.n_opt_for_data(U, p["A"], p["B"], p["alpha"], p["beta"])   # no excess parameters
    one = laws.data_constrained(N, U, U, **p, rn=rn, rd=rd)
    assert one == pytest.approx(laws.chinchilla(N, U, **p), rel=1e-12)
    # Excess parameters (N > U_N) count less: N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)) < N.
    big = laws.data_constrained(1e9, U, U, **p, rn=rn, rd=rd)
    assert big > laws.chinchilla(1e9, U, **p)
    # Effective data: U + U R* (1 - exp(-R/R*)), hand-computed for 4 epochs.
    R = 3.0
    assert laws.effective(U, R, rd) == pytest.approx(U + U * rd * (1 - math.exp(-R / rd)))
    assert laws.effective(U, 1e6, rd) == pytest.approx(U * (1 + rd))
    # U_N: compute-optimal N for U tokens, i.e. D*(C) = U at the C where N*(C) = U_N.
    un = laws.n_opt_for_data(U, p["A"], p["B"], p["alpha"], p["beta"])
    c = 6 * un * U
    assert laws.d_opt(c, p["A"], p["B"], p["alpha"], p["beta"]) == pytest.approx(U, rel=1e-9)


def test_optimal_loss_of_a_law_with_a_zero_coefficient():
    """NNLS puts A = 0 (or B = 0) on some bootstrap replicates (110 of 400 on a D/N in {2, 4, 8} table
    at 3% noise). Their split is N* = 0, D* = inf (or the mirror), and L*(C) = E: the N term is zero
    and B / inf^beta is zero. 0 * inf made L*(C) NaN, and its interval left those replicates out as
    failed ones."""
    from slmjax.analysis.scaling import approach3
    E, A, B, al, be = 1.73, 13.9, 39.8, 0.25, 0.24

    def hand(A):   # L*(1e21) from Table 5's closed forms, written out
        G = (al * A / (be * B)) ** (1 / (al + be))
        n, d = G * (1e21 / 6) ** (be / (al + be)), (1e21 / 6) ** (al / (al + be)) / G
        return E + A / n ** al + B / d ** be

    with np.errstate(divide="ignore"):
        assert laws.loss_opt(1e21, E, 0.0, B, al, be) == E
        assert laws.loss_opt(1e21, E, A, np.float64(0.0), al, be) == E
    P = np.array([[E, 0.0, B, al, be], [E, A, 0.0, al, be], [E, A, B, al, be]])
    with np.errstate(divide="ignore"):
        d = approach3.derived(P, [1e21])
    assert (d["N_opt"][0, 0], d["D_opt"][0, 0]) == (0.0, math.inf)
    assert (d["N_opt"][1, 0], d["D_opt"][1, 0]) == (math.inf, 0.0)
    assert d["L_opt"][:, 0] == pytest.approx([E, E, hand(A)], rel=1e-12)
    # Every replicate enters the L*(C) interval: 18 ordinary ones and 2 with A = 0.
    As = [A * (1 + 0.01 * i) for i in range(18)] + [0.0, 0.0]
    boot = np.array([[E, a, B, al, be] for a in As])
    with np.errstate(divide="ignore"):
        s = approach3.summarise_fit(P[2], boot, [1e21], 0.95)["at_compute"][0]["L_opt"]
    want = np.quantile([hand(a) for a in As[:18]] + [E, E], [0.025, 0.975])
    assert s["n_ok"] == s["n"] == 20 and [s["lo"], s["hi"]] == pytest.approx(want, rel=1e-12)
