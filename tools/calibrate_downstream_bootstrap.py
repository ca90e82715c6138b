"""How well each downstream bootstrap (slmjax-fit --downstream_bootstrap) measures the spread of a
downstream fit, on simulated sweeps whose truth is known.

A population of benchmark items (each with a difficulty shared by every model) and a grid of runs
whose true accuracy lies on Q = q0 C^gamma (each run off the law by its own logit noise, as seeds
make it). The truth is the spread of the envelope fit over fresh worlds (new items, new run noise);
each bootstrap is run on observed worlds and its standard error divided by the truth's (1 = exact,
< 1 too narrow intervals). Two quantities: gamma, and the fitted accuracy at the runs' mean log
compute (the level, which moves with the shared item difficulty). Prints a table; the last line is
JSON.

    PYTHONPATH=. python tools/calibrate_downstream_bootstrap.py [--worlds=10] [--reps=300] [--gamma=0.04]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from slmjax.analysis.scaling import bootstrap as bs
from slmjax.analysis.scaling import downstream, items

N_RUNS = 12
SETTINGS = ((0.0, 300), (0.05, 300), (0.05, 3000), (0.1, 3000))   # (run logit noise, items)
MODES = ("runs", "items", "both", "shared")   # slmjax-fit --downstream_bootstrap


def _world_maker(run_sd: float, n_items: int, gamma: float = 0.04):
    C = np.geomspace(1e17, 1e20, N_RUNS)
    p = 0.55 * (C / C[0]) ** gamma                         # 0.04: 0.55 -> 0.74 over three decades
    logit = np.log(p / (1 - p))

    def world(rng):
        lg = logit + rng.normal(0.0, run_sd, N_RUNS)
        d = rng.normal(0.0, 1.2, n_items)
        q = 1 / (1 + np.exp(-(lg[:, None] + d[None, :])))
        return (rng.random((N_RUNS, n_items)) < q).astype(float)
    return C, world


def _gamma_level(C, acc, w):
    g, lq, _ = downstream.gamma_fit(C, acc, w)
    return g, lq + g * np.log(C).mean()


def calibrate(run_sd, n_items, worlds, reps, gamma=0.04, truth_worlds=600):
    C, world = _world_maker(run_sd, n_items, gamma)
    rng = np.random.default_rng(1)
    sd = np.nanstd([_gamma_level(C, world(rng).mean(1), np.ones(N_RUNS)) for _ in range(truth_worlds)], 0)
    out = {m: [] for m in MODES}
    for k in range(worlds):
        X = world(np.random.default_rng(100 + k))
        it = items.ItemScores("sim", "mean", np.full(n_items, "", object), X)
        W = bs.resample_weights(N_RUNS, reps, k)
        A = items.replicate_accuracies(it, reps, k, "sim")
        own = np.repeat(X.mean(1)[None], reps, 0)
        shared = items.shared_shift(A, X.mean(1))
        for mode, w, a in (("runs", W, own), ("items", np.ones_like(W), A), ("both", W, A),
                           ("shared", W, shared)):
            R = np.array([_gamma_level(C, a[r], w[r]) for r in range(reps)])
            out[mode].append(np.nanstd(R, 0) / sd)
    return {m: np.mean(v, 0) for m, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--gamma", type=float, default=0.04,
                    help="true exponent (0.04: accuracy 0.55 -> 0.74 over the runs; 0.07: -> 0.89)")
    args = ap.parse_args()
    rows = []
    print("| run noise (logit sd) | items | " + " | ".join(f"{m}: gamma / level" for m in MODES) + " |")
    print("|---|---|" + "---|" * len(MODES))
    for run_sd, n_items in SETTINGS:
        r = calibrate(run_sd, n_items, args.worlds, args.reps, args.gamma)
        cells = " | ".join(f"{r[m][0]:.2f} / {r[m][1]:.2f}" for m in MODES)
        print(f"| {run_sd:g} | {n_items} | {cells} |")
        rows.append({"run_sd": run_sd, "n_items": n_items,
                     **{m: {"gamma": float(r[m][0]), "level": float(r[m][1])} for m in r}})
    print(json.dumps({"se_over_true_sd": rows}))


if __name__ == "__main__":
    main()
