"""Run tables simulated from a known law on the paper's grid (for parameter-recovery checks, demos
and benchmarks). Noise is multiplicative on the loss: L * (1 + noise * z), z ~ N(0, 1)."""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from slmjax import fileio
from slmjax.analysis.scaling import laws
from slmjax.analysis.scaling.table import RunTable, build_table

# PAPER.md: total params (tied embedding once) and non-embedding params of the five sizes.
PAPER_SIZES = {"s20m": (20_710_912, 20_453_888), "s85m": (85_339_392, 84_953_856),
               "s155m": (154_680_320, 154_166_272), "s309m": (308_845_568, 308_331_520),
               "s823m": (823_179_264, 822_151_168)}
PAPER_RATIOS = (2, 4, 8, 10, 20, 32, 64, 100)


def paper_grid(sizes=None, ratios=PAPER_RATIOS):
    """(N, N_nonemb, D) arrays of the paper's single-epoch grid (or a geometric grid of ``sizes``)."""
    if sizes is None:
        tot = np.array([v[0] for v in PAPER_SIZES.values()], float)
        ne = np.array([v[1] for v in PAPER_SIZES.values()], float)
    else:
        tot = np.asarray(sizes, float)
        ne = tot * 0.99
    r = np.asarray(ratios, float)
    N = np.repeat(tot, len(r))
    return N, np.repeat(ne, len(r)), N * np.tile(r, len(tot))


def simulate_rows(law="speech", noise=0.01, seed=0, sizes=None, ratios=PAPER_RATIOS, epochs=(),
                  tasks=None, n_items=2000):
    """Row dicts for ``build_table``. ``epochs``: extra runs repeating D/N=20 data that many times.

    ``tasks``: {task: (c, k, L0)} adds accuracies drawn binomially from a chance-floored sigmoid in
    the true loss, with ``n_items`` items each.
    """
    p = laws.PAPER_LAWS[law] if isinstance(law, str) else law
    rng = np.random.default_rng(seed)
    N, ne, D = paper_grid(sizes, ratios)
    U = D.copy()
    for ep in epochs:
        tot = np.unique(N)
        N = np.concatenate([N, tot])
        ne = np.concatenate([ne, tot * 0.99 if sizes is not None else np.unique(ne)])
        U = np.concatenate([U, 20 * tot])
        D = np.concatenate([D, 20 * tot * ep])
    # Single-epoch runs follow the Chinchilla surface and repeated-data runs the data-constrained form:
    # the two-stage model the paper fits.
    true = laws.chinchilla(N, D, p["E"], p["A"], p["B"], p["alpha"], p["beta"])
    if p.get("rn"):
        rep = U < D
        true[rep] = laws.data_constrained(N[rep], D[rep], U[rep], p["E"], p["A"], p["B"], p["alpha"],
                                          p["beta"], p["rn"], p["rd"])
    L = true * (1 + noise * rng.standard_normal(len(true)))
    rows = []
    for i in range(len(L)):
        row = dict(run_id=f"n{N[i]:.3g}_d{D[i]:.3g}" + (f"_u{U[i]:.3g}" if U[i] < D[i] else ""),
                   n_params=N[i], n_params_nonemb=ne[i], tokens=D[i], unique_tokens=U[i], test_loss=L[i],
                   flops=D[i] * (6 * N[i] + 6 * 2050 * 64 * 8))   # illustrative attention term
        for t, (c, k, L0) in (tasks or {}).items():
            pr = 0.5 + (c - 0.5) / (1 + np.exp(-k * (L0 - true[i])))
            row[f"acc_{t}"] = rng.binomial(n_items, pr) / n_items
            row[f"n_{t}"] = n_items
        rows.append(row)
    return rows


def simulate_table(**kw) -> RunTable:
    return build_table(simulate_rows(**kw), "simulated")


def write_csv(rows, path):
    """Write row dicts as a run-table CSV (atomically)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, keys)
    w.writeheader()
    w.writerows(rows)
    fileio.atomic_write_text(path, buf.getvalue())
