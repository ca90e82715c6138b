"""report.md: headline numbers with intervals, the figures, diagnostics, held-out check and the
reporting checklist of Li et al. (2025) filled in from the analysis."""

from __future__ import annotations

import os

from slmjax import fileio


def _iv(s, fmt="{:.3g}"):
    if not s or s.get("value") is None:
        return "-"
    v = fmt.format(s["value"])
    # Replicates that failed (NaN) are left out of the interval: say how many were used. Infinite
    # ones are in it (an infinite limit prints as inf): say how many there were.
    n_ok, n, n_inf = s.get("n_ok", 0), s.get("n", 0), s.get("n_inf", 0)
    notes = [f"{n_ok} of {n} replicates"] if n_ok < n else []
    if n_inf:
        notes.append(f"{n_inf} of them infinite" if notes else f"{n_inf} of {n} replicates infinite")
    used = f" ({', '.join(notes)})" if notes else ""
    if s.get("lo") is None:
        return v + used
    return f"{v} [{fmt.format(s['lo'])}, {fmt.format(s['hi'])}]{used}"


def _params_table(fits):
    rows = ["| fit | E | A | B | alpha | beta | a | b | G |", "|---|---|---|---|---|---|---|---|---|"]
    for name, f in fits:
        p, al = f["params"], f["allocation"]
        rows.append(f"| {name} | " + " | ".join(_iv(p[k]) for k in ("E", "A", "B", "alpha", "beta"))
                    + " | " + " | ".join(_iv(al[k]) for k in ("a", "b", "G")) + " |")
    return rows


def _compute_table(f):
    rows = ["| C (FLOPs) | N*(C) | D*(C) | tokens per parameter | L*(C) |", "|---|---|---|---|---|"]
    for r in f["at_compute"]:
        rows.append(f"| {r['C']:.3g} | {_iv(r['N_opt'])} | {_iv(r['D_opt'])} | "
                    f"{_iv(r['tokens_per_param'])} | {_iv(r['L_opt'])} |")
    return rows


def render(res: dict, figures: dict) -> str:
    o, t, a3 = res["options"], res["table"], res["approach3"]
    lvl = f"{100 * o['level']:.4g}%"
    md = [f"# Scaling-law fit: {t['source']}", "",
          f"{t['runs']} runs ({t['single_epoch_runs']} single-epoch, {t['multi_epoch_runs']} multi-epoch), "
          f"{t['sizes']} model sizes, {t['budgets']} token budgets (distinct D/N). Intervals: {lvl} percentile bootstrap "
          f"over runs ({a3['vp']['replicates']} replicates; {a3['huber']['replicates']} for the Huber objective).",
          "", "## Approach 3: L(N, D) = E + A / N^alpha + B / D^beta", ""]
    md += _params_table([("variable projection (least squares)", a3["vp"]),
                         (f"paper objective (Huber delta {o['delta']} on log-loss)", a3["huber"])])
    md += ["", "Compute-optimal allocation (variable projection):", ""] + _compute_table(a3["vp"])
    md += ["", "Compute-optimal allocation (paper objective):", ""] + _compute_table(a3["huber"])
    md += ["", "## Approach 2 (IsoFLOP) and Approach 1 (envelope)", ""]
    a2, a1 = res["approach2"], res["approach1"]
    if "skipped" in a2:
        md.append(f"- Approach 2: skipped: {a2['skipped']}.")
    else:
        md.append(f"- Approach 2: a = {_iv(a2['a'])}, b = {_iv(a2['b'])} from {a2['profiles_used']} profiles "
                  f"({'budget groups' if a2['grouped'] else 'interpolated along each size'}).")
    if "skipped" in a1:
        md.append(f"- Approach 1: skipped: {a1['skipped']}.")
    else:
        env = (f"N on the envelope not fitted: {a1['a_env_skipped']}" if a1.get("a_env_skipped")
               else f"N on the envelope ~ C^{_iv(a1['a_env'])}")
        md.append(f"- Approach 1 (Kaplan, envelope of {len(a1['envelope_runs'])} runs): "
                  f"L ~ C^-gamma with gamma = {_iv(a1['gamma'])}; {env}.")
    dc = res["data_constrained"]
    md += ["", "## Data-constrained terms (second stage, multi-epoch runs)", ""]
    if "skipped" in dc:
        md.append(f"- skipped: {dc['skipped']}.")
    for name, d in [] if "skipped" in dc else [("variable projection", dc),
                                                ("paper objective", dc["paper_objective"])]:
        md.append(f"- first stage by {name}: R*_N = {_iv(d['R*_N'])}, R*_D = {_iv(d['R*_D'])} from "
                  f"{d['n_runs']} multi-epoch runs"
                  + (f"; at bounds: {', '.join(d['at_bounds'])}" if d["at_bounds"] else "") + ".")
    if res["downstream"]:
        md += ["", "## Downstream", "",
               "| task | runs | acc = c0 + c1 L: c1 | sigmoid ceiling c | gamma (Q ~ C^gamma) | ratios to reference |",
               "|---|---|---|---|---|---|"]
        for task, d in res["downstream"].items():
            if "skipped" in d:
                md.append(f"| {task} | skipped: {d['skipped']} | | | | |")
                continue
            ratios = "; ".join(f"{k[len('ratio_'):-len('_over_ours')]}: {_iv(v)}" for k, v in d.items() if k.startswith("ratio_"))
            ceiling = (f"not identified [{d['sig_c']['lo']:g}, {d['sig_c']['hi']:g}]" if d.get("sig_c_unidentified")
                       else _iv(d['sig_c']))
            md.append(f"| {task} | {d['n_runs']} | {_iv(d['c1'])} | {ceiling} | {_iv(d['gamma'], '{:.4f}')} "
                      f"| {ratios or '-'} |")
            if d.get("sig_c_unidentified"):
                md.append(f"| {task}: sigmoid {d['sig_c_unidentified']} | | | | | |")
            if d.get("gamma_skipped"):
                md.append(f"| {task}: gamma not fitted: {d['gamma_skipped']} | | | | | |")
            if "compute_to_target" in d:
                ct = d["compute_to_target"]
                md.append(f"| {task}: compute to reach {100 * ct['target']:.1f}% | | | | {_iv(ct)} FLOPs | |")
        redraws = "; ".join(f"{task}: {d['bootstrap']}" for task, d in res["downstream"].items()
                            if "bootstrap" in d)
        md += ["", "Ratios are reference gamma / our gamma (the paper's text rows give its "
               "\"orders of magnitude more slowly\" claim)."
               + (f" Each task's replicates redraw: {redraws}." if redraws else "")]
    ho = res["holdout"]
    md += ["", "## Held-out validation", ""]
    if "skipped" in ho:
        md.append(f"Skipped: {ho['skipped']}.")
    else:
        md += [f"Fitted on {ho['n_train']} runs, predicted the {ho['n_held']} runs with the largest compute "
               f"(C >= {ho['held_min_C']:.3g}): mean signed error {100 * ho['mean_signed_rel_error']:+.2f}%, "
               f"max |error| {100 * ho['max_abs_rel_error']:.2f}%, {100 * ho['pi_coverage']:.0f}% inside the {lvl} "
               f"prediction interval ({100 * ho['ci_coverage']:.0f}% inside the interval of the mean).", "",
               "| run | N | D | observed | predicted | prediction interval | error |", "|---|---|---|---|---|---|---|"]
        for r in ho["runs"]:
            md.append(f"| {r['run_id']} | {r['N']:.3g} | {r['D']:.3g} | {r['observed']:.4f} | {r['predicted']:.4f} "
                      f"| [{r['pi'][0]:.4f}, {r['pi'][1]:.4f}] | {100 * r['rel_error']:+.2f}% |")
    if t["notes"]:
        md += ["", "## Notes on the input", ""] + [f"- {n}" for n in t["notes"]]
    md += ["", "## Diagnostics", "", "| check | flagged | detail |", "|---|---|---|"]
    for d in res["diagnostics"]:
        md.append(f"| {d['check']} | {'**YES**' if d['flag'] else 'no'} | {d['detail']} |")
    s = res["sensitivity"]
    md += ["", "## Sensitivity to conventions", "",
           "- a (Approach 3) by N convention: " + ", ".join(f"{k}: {v:.3f}" for k, v in
                                                           s["approach3_a_by_n_convention"].items()),
           "- a (Approach 2) by FLOP convention: " + ", ".join(
               f"{k}: {'-' if v is None else f'{v:.3f}'}" for k, v in s["approach2_a_by_flops"].items())]
    md += ["", "## Figures", ""]
    for name, f in figures.items():
        md += [f"![{name}]({f})", ""]
    md += ["## Reporting checklist (Li et al. 2025)", ""] + _checklist(res)
    return "\n".join(md) + "\n"


def _checklist(res):
    o, t = res["options"], res["table"]
    excl = t["excluded"]
    conv = {"6N": "C = 6 N D (N total)", "6N_nonemb": "C = 6 N D (N non-embedding)",
            "6N_attn": "C = (6 N + 12 L H Q T, causal attention halved) D"}
    return [
        "- **Form**: L(N, D) = E + A/N^alpha + B/D^beta (Chinchilla); data-constrained D', N' of Muennighoff "
        "et al. (2023) for repeated data; Kaplan L(C) on the envelope; downstream linear-in-loss, chance-floored "
        "sigmoid, Q ~ C^gamma on the best-accuracy envelope.",
        f"- **N**: {'total parameters, tied embedding counted once' if o['n_param'] == 'total' else 'non-embedding parameters'}"
        f" (range {t['N_range'][0]:.3g}-{t['N_range'][1]:.3g}).",
        f"- **D**: tokens seen, repeats counted (range {t['D_range'][0]:.3g}-{t['D_range'][1]:.3g}); unique tokens "
        "enter only the data-constrained stage.",
        f"- **C**: compute axis of Approach 1 and downstream: {conv.get(o['flops'], o['flops'])}; Approach 2 and the "
        "allocation: C = 6 N D."
        f" Conventions available: {', '.join(t['flops_conventions'])}.",
        "- **Schedule**: every run is a separate schedule ending at its D; runs whose schedule did not end at D are "
        "excluded (intermediate checkpoints of a longer cosine are never used as runs).",
        f"- **Objective and optimizer**: (i) variable projection: sum of squared loss residuals, exact NNLS for E, A, "
        f"B, dense (alpha, beta) grid {o['grid'][0]}-{o['grid'][1]} ({int(o['grid'][2])} x {int(o['grid'][2])}), "
        "5 zoomed refinement grids, Nelder-Mead polish (bootstrap replicates: "
        f"{int(o['boot_grid'][2])} x {int(o['boot_grid'][2])} grid, 6 zooms); (ii) the paper's: sum of Huber "
        f"(delta {o['delta']}) on log-loss, log-sum-exp parametrisation, 4,500-point Chinchilla start grid evaluated, "
        f"L-BFGS-B from the best {o['n_refine']} plus the VP solution (ftol 1e-15, gtol 1e-10), e <= log min L.",
        f"- **Excluded points**: {len(excl)}" + (": " + "; ".join(f"{e['run_id']} ({e['reason']})" for e in excl[:20])
                                                 if excl else "") + ".",
        f"- **Intervals**: {100 * o['level']:.4g}% percentile bootstrap over whole runs"
        f" (stratified by IsoFLOP budget when labelled, multi-epoch runs apart), seed {o['seed']}; every fit redone "
        "per replicate (variable projection from its whole grid; the Huber objective, the sigmoid and the repeat "
        "terms started from the point fit, Huber also from the replicate's VP fit)" + _item_redraws(o) + ".",
        f"- **Held-out validation**: {_held_out(res['holdout'], o['holdout'])}; see above.",
    ]


def _item_redraws(o):
    """The checklist's words on the benchmark items downstream replicates redraw (--downstream_bootstrap)."""
    mode = o.get("downstream_bootstrap", "runs")
    if mode == "shared":
        return ("; downstream replicates also redraw the benchmark items the runs share and move every run's "
                "accuracy by the shift of their mean, where every run has item outcomes (Downstream above)")
    if mode == "both":
        return ("; downstream replicates also redraw the benchmark items the runs share where every run "
                "has item outcomes (Downstream above)")
    if mode == "items":
        return ("; downstream replicates redraw the benchmark items the runs share instead, the runs held "
                "fixed, where every run has item outcomes (Downstream above)")
    return "; downstream replicates redraw runs only (--downstream_bootstrap=runs)"


def _held_out(ho, frac):
    if "skipped" in ho:
        return f"skipped ({ho['skipped']})"
    if ho.get("by_budget", True):
        return (f"the {ho['n_held']} of {ho['n_train'] + ho['n_held']} single-epoch runs with the largest budgets "
                f"held out (--holdout={frac:g}; an IsoFLOP budget is held out whole)")
    return (f"the {ho['n_held']} of {ho['n_train'] + ho['n_held']} single-epoch runs of the most compute held "
            f"out (--holdout={frac:g}; not every run has a budget label, so they are held out by compute)")


def write(res, figures, out):
    path = os.path.join(out, "report.md")
    fileio.atomic_write_text(path, render(res, figures))
    return path
