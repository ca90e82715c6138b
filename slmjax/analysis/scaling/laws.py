"""Closed forms: the Chinchilla surface, compute-optimal allocation, the data-constrained terms.

Conventions (PAPER.md, SCALING.md): L(N, D) = E + A / N^alpha + B / D^beta with C = 6 N D;
a = beta / (alpha + beta), b = alpha / (alpha + beta), G = (alpha A / (beta B))^(1 / (alpha + beta)),
N*(C) = G (C/6)^a, D*(C) = (C/6)^b / G.
"""

from __future__ import annotations

import numpy as np

# Table 5 of Cuervo & Marxer (2024).
PAPER_LAWS = {
    "text": dict(E=1.87, A=521.0, B=1488.0, alpha=0.35, beta=0.35, rn=5.31, rd=15.4),
    "speech": dict(E=1.73, A=13.9, B=39.8, alpha=0.25, beta=0.24, rn=31.0, rd=25.0),
    "speech_unigram": dict(E=1.42, A=3.85, B=8.90, alpha=0.15, beta=0.16, rn=None, rd=None),
}
# Downstream gamma (Q ~ C^gamma) of the paper: speech rows and Pythia text rows.
PAPER_GAMMA = {
    "speech": {"sblimp": 0.021, "tsc": 0.025, "ssc": 0.017},
    "text": {"sblimp": 0.066, "tsc": 0.039, "ssc": 0.046},
}


def chinchilla(N, D, E, A, B, alpha, beta):
    """L(N, D) = E + A / N^alpha + B / D^beta (broadcasts).

    A zero coefficient's term is zero wherever its N or D lies, 0 and inf included: a law with A = 0
    (NNLS can put it there) splits compute as N* = 0, D* = inf, and its L*(C) is E + 0, not 0 * inf.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        tn = np.where(np.equal(A, 0), 0.0, A * np.power(N, -alpha))
        td = np.where(np.equal(B, 0), 0.0, B * np.power(D, -beta))
    return E + tn + td


def allocation(E, A, B, alpha, beta):
    """Exponents a, b and coefficient G of the compute-optimal split under C = 6 N D."""
    s = alpha + beta
    return dict(a=beta / s, b=alpha / s, G=(alpha * A / (beta * B)) ** (1.0 / s))


def n_opt(C, A, B, alpha, beta):
    al = allocation(0.0, A, B, alpha, beta)
    return al["G"] * np.power(np.asarray(C) / 6.0, al["a"])


def d_opt(C, A, B, alpha, beta):
    al = allocation(0.0, A, B, alpha, beta)
    return np.power(np.asarray(C) / 6.0, al["b"]) / al["G"]


def loss_opt(C, E, A, B, alpha, beta):
    """L*(C): the loss of the compute-optimal model at compute C."""
    return chinchilla(n_opt(C, A, B, alpha, beta), d_opt(C, A, B, alpha, beta), E, A, B, alpha, beta)


def n_opt_for_data(U, A, B, alpha, beta):
    """Compute-optimal N for a data budget U (the N whose D*(C) equals U)."""
    al = allocation(0.0, A, B, alpha, beta)
    c6 = np.power(al["G"] * np.asarray(U), 1.0 / al["b"])
    return al["G"] * np.power(c6, al["a"])


def effective(U, R, rstar):
    """Muennighoff et al.: U + U R* (1 - exp(-R / R*)), the effective size after R repeats."""
    return U + U * rstar * (-np.expm1(-R / rstar))


def data_constrained(N, D, U_D, E, A, B, alpha, beta, rn, rd):
    """Loss with repeated data: D -> D', N -> N' (PAPER.md's data-constrained form)."""
    R_D = np.maximum(D / U_D - 1.0, 0.0)
    U_N = np.minimum(N, n_opt_for_data(U_D, A, B, alpha, beta))
    R_N = np.maximum(N / U_N - 1.0, 0.0)
    return chinchilla(effective(U_N, R_N, rn), effective(U_D, R_D, rd), E, A, B, alpha, beta)
