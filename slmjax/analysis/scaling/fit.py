"""The whole analysis of one run table: every fit, its bootstrap, held-out check and diagnostics.

``analyse(table, FitOptions(...))`` returns a JSON-ready dict (written as fit.json) and a dict of
arrays for the plots. One matrix of resample weights drives every bootstrapped quantity.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from slmjax.analysis.scaling import approach3, checks, datacon, downstream, huber, isoflop, items, vpfit
from slmjax.analysis.scaling import bootstrap as bs
from slmjax.analysis.scaling.errors import FitInputError
from slmjax.analysis.scaling.table import RunTable, check_coverage


DOWNSTREAM_BOOTSTRAP = ("shared", "both", "runs", "items")   # what downstream replicates redraw (items.py)


@dataclasses.dataclass
class FitOptions:
    n_param: str = "total"            # N convention: total (tied embedding once) or nonemb
    flops: str = "6N"                 # compute axis for Approach 1 and downstream (Approach 2: 6ND)
    bootstrap: int = 1000             # replicates for the VP fit and everything derived from it
    huber_bootstrap: int = 200        # replicates for the paper's objective (L-BFGS per replicate)
    seed: int = 0
    workers: int = 0                  # 0: all cores
    level: float = 0.95
    delta: float = 0.03               # Huber delta (paper 0.03; Chinchilla 1e-3)
    n_refine: int = 64                # L-BFGS runs from the best grid starts of the paper's objective
    holdout: float = 0.2              # fraction of runs (largest budgets) held out
    target_flops: tuple = (1e21,)     # extra compute levels for N*(C), D*(C), L*(C)
    target_acc: dict = dataclasses.field(default_factory=dict)   # task -> accuracy to reach (or percent)
    reference: str | None = None      # CSV task,gamma[,label]; default: the paper's rows
    sigmoid: bool = True
    downstream_bootstrap: str = "shared"  # what downstream replicates redraw: shared, both, runs, items
    grid: tuple = vpfit.ALPHA_GRID      # (alpha, beta) grid of the point fit
    boot_grid: tuple = vpfit.BOOT_GRID  # coarser grid of bootstrap replicates (then zoomed)

    def validate(self):
        checks = [("bootstrap", self.bootstrap >= 20, "at least 20"), ("seed", self.seed >= 0, "0 or more"),
                  ("huber_bootstrap", self.huber_bootstrap >= 0, "0 or more"),
                  ("level", 0.5 < self.level < 1, "in (0.5, 1)"), ("delta", self.delta > 0, "positive"),
                  ("holdout", 0 < self.holdout < 0.5, "in (0, 0.5)"), ("n_refine", self.n_refine >= 1, ">= 1"),
                  ("target_flops", all(0 < c < float("inf") for c in self.target_flops), "positive and finite"),
                  ("downstream_bootstrap", self.downstream_bootstrap in DOWNSTREAM_BOOTSTRAP,
                   "one of " + ", ".join(DOWNSTREAM_BOOTSTRAP))]
        for name, ok, need in checks:
            if not ok:
                raise FitInputError(f"--{name}={getattr(self, name)} must be {need}")


def _target_fractions(targets, tasks):
    """Target accuracies as fractions: a fraction in (0.5, 1) or a percent in (50, 100) per table task."""
    out = {}
    for task, v in targets.items():
        if task not in tasks:
            raise FitInputError(f"--target_acc: no task {task!r} in the run table (it has "
                                f"{', '.join(sorted(tasks)) or 'no acc_<task> column'})")
        if not (0.5 < v < 1 or 50 < v < 100):
            raise FitInputError(f"--target_acc {task}={v:g} must be a fraction in (0.5, 1) or a percent in "
                                "(50, 100): the tasks have two alternatives, chance 0.5")
        out[task] = v if v < 1 else v / 100
    return out


def _num(x):
    return None if x is None or not np.isfinite(x) else float(x)


def analyse(table: RunTable, opt: FitOptions):
    t0 = time.perf_counter()
    opt.validate()
    opt = dataclasses.replace(opt, target_acc=_target_fractions(opt.target_acc, table.acc))
    ref = downstream.read_reference(opt.reference)   # a bad path stops here, not after the fits
    workers = opt.workers or bs.default_workers()
    if opt.flops not in table.flops:
        raise FitInputError(f"--flops={opt.flops} unavailable (table has {', '.join(table.flops)})")
    N_all, D_all, L_all = table.n(opt.n_param), table.tokens, table.test_loss
    C_all = table.flops[opt.flops]
    single = ~table.multi_epoch
    one = table.subset(np.nonzero(single)[0])
    check_coverage(one)
    N, D, L, C = N_all[single], D_all[single], L_all[single], C_all[single]
    lN, lD = np.log(N), np.log(D)
    C6 = 6 * N * D
    C_points = sorted({float(C6.max()), *map(float, opt.target_flops)})
    C_grid = np.geomspace(C6.min() / 3, max(C6.max() * 100, max(C_points)), 60)
    # Strata: IsoFLOP budgets, and the multi-epoch runs apart (label -2; budgets are positive, NaN
    # is the unlabelled stratum), so each fitting stage keeps its own number of runs per replicate.
    strata = np.where(table.multi_epoch, -2.0, table.budget)
    W_all = bs.resample_weights(len(table), opt.bootstrap, opt.seed, strata)
    W = W_all[:, single]
    timing = {}

    # Approach 3: variable projection (primary) and the paper's Huber objective.
    t = time.perf_counter()
    vp = vpfit.vp_fit(lN, lD, L, grid=opt.grid, keep_grid=True)
    vp_boot = approach3.vp_bootstrap(lN, lD, L, W, workers, grid=opt.boot_grid)
    timing["approach3_vp_s"] = time.perf_counter() - t
    t = time.perf_counter()
    hub = huber.huber_fit(lN, lD, L, delta=opt.delta, n_refine=opt.n_refine,
                          extra_starts=[huber.to_theta(vp.params[0])])
    hb = min(opt.huber_bootstrap, opt.bootstrap)
    hub_boot = approach3.huber_bootstrap(lN, lD, L, W[:hb], hub.theta, vp_boot[:hb], opt.delta, workers)
    timing["approach3_huber_s"] = time.perf_counter() - t
    res = {"approach3": {
        "vp": {**approach3.summarise_fit(vp.params[0], vp_boot, C_points, opt.level),
               "sse": float(vp.sse[0]), "objective": "sum of squared loss residuals, NNLS for E, A, B",
               "grid": list(opt.grid), "replicates": int(len(vp_boot))},
        "huber": {**approach3.summarise_fit(hub.params, hub_boot, C_points, opt.level),
                  "objective_value": hub.objective, "delta": opt.delta, "starts": hub.n_starts,
                  "converged": hub.converged, "replicates": int(len(hub_boot)),
                  "top_starts": [[f, p.tolist()] for f, p in hub.top]},
    }}
    plots = {"L_all": L_all, "C_all": C_all, "N": N, "D": D, "L": L, "C": C, "C6": C6, "C_grid": C_grid,
             "flops": opt.flops, "level": opt.level,
             "vp_params": vp.params[0], "vp_boot": vp_boot, "hub_params": hub.params,
             "bands": approach3.bands(vp.params[0], vp_boot, C_grid, opt.level)}

    # Approach 2 (IsoFLOP) and Approach 1 (envelope), on the same replicates.
    t = time.perf_counter()
    budget = one.budget if np.isfinite(one.budget).sum() >= 3 else None
    a2 = isoflop.isoflop_fit(N, D, L, C6, budget)
    if a2 is not None and np.isfinite(a2["a"]):
        reps = np.array([(r["a"], r["b"]) if r and np.isfinite(r.get("a", np.nan)) else (np.nan, np.nan)
                         for r in (isoflop.isoflop_fit(N, D, L, C6, budget, w) for w in W)])
        res["approach2"] = {"a": bs.summarise(a2["a"], reps[:, 0], opt.level),
                            "b": bs.summarise(a2["b"], reps[:, 1], opt.level), "k": a2["k"],
                            "grouped": a2["grouped"], "profiles_used": a2["n_used"],
                            "profiles": a2["profiles"]}
    else:
        res["approach2"] = {"skipped": isoflop.skip_reason(N, D, budget, a2)}
    plots["approach2"] = a2
    a1 = isoflop.kaplan_fit(N, C, L)
    if a1 is not None:
        reps = np.array([[r["gamma"], r["a_env"]] if r else [np.nan, np.nan]
                         for r in (isoflop.kaplan_fit(N, C, L, w) for w in W)])
        res["approach1"] = {"gamma": bs.summarise(a1["gamma"], reps[:, 0], opt.level),
                            "a_env": bs.summarise(a1["a_env"], reps[:, 1], opt.level),
                            "C_c": a1["C_c"], "envelope_runs": [str(one.run_id[i]) for i in a1["envelope"]],
                            "compute": opt.flops}
        if not np.isfinite(a1["a_env"]):
            # Replicates whose envelope held 3 sizes would give an interval around no point estimate.
            sizes = len(np.unique(np.round(np.log(N[a1["envelope"]]), 3)))
            res["approach1"].update(a_env=bs.summarise(None, [], opt.level),
                                    a_env_skipped=f"{sizes} model size(s) on the envelope (need 3)")
    else:
        res["approach1"] = {"skipped": "fewer than 3 runs on the loss-compute envelope"}
    plots["approach1"] = a1
    timing["approach12_s"] = time.perf_counter() - t

    # Data-constrained second stage on multi-epoch runs, from either first stage: variable
    # projection (primary) and, as the paper did it, the Huber objective's.
    multi = table.multi_epoch
    if multi.sum() >= 2:
        t = time.perf_counter()
        args = (N_all[multi], D_all[multi], table.unique_tokens[multi], L_all[multi])
        res["data_constrained"] = _repeat_terms(args, vp.params[0], vp_boot, W_all[:, multi], opt, workers)
        res["data_constrained"]["paper_objective"] = _repeat_terms(
            args, hub.params, hub_boot, W_all[:hb, multi], opt, workers, " (paper objective)")
        timing["data_constrained_s"] = time.perf_counter() - t
    else:
        res["data_constrained"] = {"skipped": f"{int(multi.sum())} multi-epoch run(s); need at least 2"}

    # Downstream.
    t = time.perf_counter()
    res["downstream"], plots["downstream"] = _downstream(table, L_all, C_all, W_all, opt, workers, ref)
    timing["downstream_s"] = time.perf_counter() - t

    # Held-out validation and diagnostics.
    t = time.perf_counter()
    res["holdout"] = checks.holdout(one, N, D, L, C6, opt.holdout, min(opt.bootstrap, 200), opt.seed,
                                    workers, opt.level)
    timing["holdout_s"] = time.perf_counter() - t
    res["sensitivity"] = _sensitivity(table, one, opt)
    res["diagnostics"] = checks.diagnostics(res, vp, vp_boot, hub, N, D, L, C6, vp.grid, one.budget)
    timing["total_s"] = time.perf_counter() - t0
    res["timing"] = timing
    res["table"] = _table_summary(table, one, opt)
    res["options"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(opt).items()}
    res["options"]["workers"] = workers
    return res, plots


def _repeat_terms(args, stage1, stage1_boot, W, opt, workers, label=""):
    """R*_N, R*_D with bootstrap intervals, each replicate refitting on its own first-stage law."""
    dc = datacon.repeat_fit(*args, stage1, delta=opt.delta)
    x0 = [np.log([dc["rn"], dc["rd"]])]
    reps = np.array([[r["rn"], r["rd"]] for r in bs.map_rows(
        _datacon_row, list(zip(stage1_boot, W)), (args, opt.delta, x0), workers,
        desc=f"bootstrap (repeat terms{label})")]).reshape(-1, 2)
    return {"R*_N": bs.summarise(dc["rn"], reps[:, 0], opt.level),
            "R*_D": bs.summarise(dc["rd"], reps[:, 1], opt.level),
            "n_runs": len(args[0]), "at_bounds": dc["at_bounds"]}


def _datacon_row(common, row):
    data, delta, x0 = common
    p, w = row
    if w.sum() == 0:
        return {"rn": np.nan, "rd": np.nan}
    return datacon.repeat_fit(*data, p, w=w, delta=delta, extra_starts=x0, n_grid=2)


def _down_row(common, row):
    L, C, a, n, sig, x0 = common
    w, a_items = row
    return downstream.task_fit(L, C, a if a_items is None else a_items, n, w, sig=sig, x0=x0)[0]


def _downstream_replicates(table, task, acc, W, opt):
    """(run weights, per-replicate accuracies or Nones, what the replicates redraw) for ``task``
    under ``opt.downstream_bootstrap`` (items.py), where the table has its items: the runs
    redrawn and every run's accuracy moved by the shift that redrawing the items gives the runs'
    mean (``shared``), the runs rescored on redrawn items with the runs redrawn too (``both``) or
    fixed (``items``); else (``runs``, or no items) the runs alone with their own accuracies."""
    it = table.items.get(task)
    if it is None or opt.downstream_bootstrap == "runs":
        return W, [None] * len(W), "runs"
    A = items.replicate_accuracies(it, len(W), opt.seed, task)
    strat = ", stratified by type" if it.stat == "macro" else ""
    what = f"the {it.n_items} {it.benchmark} items all runs share (redrawn once per replicate{strat})"
    if opt.downstream_bootstrap == "shared":
        return W, list(items.shared_shift(A, acc)), (
            f"runs, and the shift of every run's accuracy by {what}")
    if opt.downstream_bootstrap == "items":
        return np.ones_like(W), list(A), f"{what}; runs fixed"
    return W, list(A), f"runs and {what}"


def _downstream(table, L, C, W, opt, workers, ref):
    out, plots = {}, {}
    for task, (acc, n) in table.acc.items():
        if np.isfinite(acc).sum() < 3:
            out[task] = {"skipped": f"{int(np.isfinite(acc).sum())} runs with scores; need at least 3"}
            continue
        chance = downstream.at_chance(acc, n)
        if chance:
            out[task] = {"skipped": chance}
            plots[task] = dict(acc=acc, n=n, point=None, front=[])   # its runs, with no fit
            continue
        point, front = downstream.task_fit(L, C, acc, n, sig=opt.sigmoid)
        x0 = (point["sig_c"], point["sig_k"], point["sig_L0"]) if np.isfinite(point["sig_c"]) else None
        Wt, A, unit = _downstream_replicates(table, task, acc, W, opt)
        reps = bs.map_rows(_down_row, list(zip(Wt, A)), (L, C, acc, n, opt.sigmoid, x0), workers,
                           desc=f"bootstrap ({task})")
        R = {k: np.array([r[k] for r in reps]) for k in point}
        t = {k: bs.summarise(point[k], R[k], opt.level) for k in point}
        no_gamma = not np.isfinite(point["gamma"])
        if no_gamma:
            # Replicates that drew 3 envelope runs would give an interval around no point estimate.
            why = f"{len(front)} run(s) on the accuracy envelope (need 3 for gamma)"
            t.update(gamma=bs.summarise(None, [], opt.level), log_q0=bs.summarise(None, [], opt.level),
                     gamma_skipped=why)
        t["sig_c_identified"] = None
        if np.isfinite(point["sig_c"]):
            ok, why_c = downstream.ceiling_identified(point["sig_rise"], point["sig_top"], R["sig_rise"], R["sig_top"])
            t["sig_c_identified"] = ok
            if not ok:
                # The percentile interval of an unidentified c is the optimizer's, not the data's.
                t["sig_c"].update(lo=downstream.CEILING_BOUNDS[0], hi=downstream.CEILING_BOUNDS[1],
                                  median=None, se=None)
                t["sig_c_unidentified"] = why_c
        t["n_runs"] = int(np.isfinite(acc).sum())
        t["bootstrap"] = unit
        t["n_items"] = _num(np.nanmedian(n)) if np.isfinite(n).any() else None
        t["envelope_runs"] = [str(table.run_id[i]) for i in front]
        for label, g in ([] if no_gamma else ref.items()):
            if task in g:
                t[f"ratio_{label}_over_ours"] = bs.summarise(g[task] / point["gamma"], g[task] / R["gamma"], opt.level)
                t[f"gamma_{label}"] = g[task]
        target = opt.target_acc.get(task)
        if target and no_gamma:
            t["compute_to_target"] = {"target": target, "skipped": why}
        elif target:
            ct = [downstream.compute_for(target, g, q) for g, q in zip(R["gamma"], R["log_q0"])]
            t["compute_to_target"] = {"target": target, **bs.summarise(
                downstream.compute_for(target, point["gamma"], point["log_q0"]), ct, opt.level)}
        out[task] = t
        plots[task] = dict(acc=acc, n=n, point=point, front=front, ceiling_identified=t["sig_c_identified"])
    return out, plots


def _sensitivity(table, one, opt):
    """Point estimates of a (Approach 3) per N convention and of Approach 2 per FLOP convention."""
    out = {"approach3_a_by_n_convention": {}, "approach2_a_by_flops": {}}
    for conv in ("total", "nonemb"):
        try:
            N = one.n(conv)
        except FitInputError:
            continue
        p = vpfit.vp_fit(np.log(N), np.log(one.tokens), one.test_loss, grid=opt.grid).params[0]
        out["approach3_a_by_n_convention"][conv] = float(p[4] / (p[3] + p[4]))
    budget = one.budget if np.isfinite(one.budget).sum() >= 3 else None
    for conv, C in one.flops.items():
        r = isoflop.isoflop_fit(one.n(opt.n_param), one.tokens, one.test_loss, C, budget)
        out["approach2_a_by_flops"][conv] = _num(r["a"]) if r else None
    return out


def _table_summary(table, one, opt):
    N = table.n(opt.n_param)
    return dict(source=table.source, runs=len(table), single_epoch_runs=len(one),
                multi_epoch_runs=int(table.multi_epoch.sum()), sizes=table.distinct(table.n_params),
                budgets=table.distinct(table.tokens / table.n_params, rel=0.05), N_range=[float(N.min()), float(N.max())],
                D_range=[float(table.tokens.min()), float(table.tokens.max())],
                C_range=[float(table.flops[opt.flops].min()), float(table.flops[opt.flops].max())],
                flops_conventions=list(table.flops), tasks=sorted(table.acc),
                excluded=[{"run_id": r, "reason": why} for r, why in table.excluded], notes=table.notes)
