"""The demo's report.md: what was run, the fitted law beside the paper's, and the benchmarks."""

from __future__ import annotations

import datetime
import glob
import json
import os
import platform

from slmjax import fileio
from slmjax.analysis.scaling.fitjson import unclean
from slmjax.analysis.scaling.sweep import read_sweep
from slmjax.analysis.zeroshot.errors import ZeroShotError
from slmjax.analysis.zeroshot.runs import training_context

# The paper's Table 5 (speech, HuBERT units) and its downstream gammas (PAPER.md).
PAPER_LAW = {"E": 1.73, "A": 13.9, "B": 39.8, "alpha": 0.25, "beta": 0.24}
PAPER_GAMMA = {"sblimp": 0.021, "tsc": 0.025, "ssc": 0.017}
TASK_TITLES = {"sblimp": "sBLIMP (macro)", "swuggy": "sWUGGY (all)", "ssc": "sSC", "tsc": "tSC"}


def _load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _iv(d, fmt="{:.3g}"):
    """'value [lo, hi]' from a bootstrap summary dict."""
    if not isinstance(d, dict) or d.get("value") is None:
        return "n/a"
    s = fmt.format(d["value"])
    if d.get("lo") is not None and d.get("hi") is not None:
        s += f" [{fmt.format(d['lo'])}, {fmt.format(d['hi'])}]"
    return s


def _corpus_summary(out):
    rows = []
    path = os.path.join(out, "corpus", "manifest.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    hours = sum(float(r.get("duration", 0)) for r in rows) / 3600
    # a voice spec is ENGINE:VOICE[:sSPEED][:pPITCH]; speed and pitch are jittered per utterance
    voices = sorted({":".join(str(r.get("voice")).split(":")[:2]) for r in rows})
    return len(rows), hours, voices


def _final_scores(workdir):
    """scores.json of the run's last scored checkpoint ({} if none)."""
    steps = sorted((int(os.path.basename(p)) for p in glob.glob(os.path.join(workdir, "zeroshot", "*"))
                    if os.path.basename(p).isdigit()))
    if not steps:
        return {}
    return _load(os.path.join(workdir, "zeroshot", str(steps[-1]), "scores.json"), {})


def _runs(runs_dir):
    """[(workdir, run.json dict, final scores.json dict)] of every run, by N then D."""
    out = []
    for path in glob.glob(os.path.join(runs_dir, "*", "run.json")):
        wd = os.path.dirname(path)
        out.append((wd, _load(path, {}), _final_scores(wd)))
    return sorted(out, key=lambda r: (r[1].get("n_params") or 0, r[1].get("tokens") or 0, r[0]))


def _context_note(runs):
    """A sentence on the scoring context and the files longer than it (from any scored run)."""
    for _, _, scores in runs:
        if not scores.get("context"):
            continue
        ctx = scores["context"]
        cut = {t: (v.get("n_truncated", 0), v.get("n_files", 0))
               for t, v in scores.get("tasks", {}).items() if v.get("n_truncated")}
        note = f"Every file was scored in a context of {ctx} units"
        if cut:
            note += ("; longer files keep only their last units, and the story or sentence before them "
                     "could not inform the choice: " + ", ".join(
                         f"{n} of {f} {t} files" for t, (n, f) in sorted(cut.items())))
        return note + "."
    return ""


def _runs_section(runs):
    lines = ["| run | N (params) | D (tokens) | epochs | test loss | "
             + " | ".join(TASK_TITLES.values()) + " |",
             "|---|---|---|---|---|" + "---|" * len(TASK_TITLES)]
    best = {t: None for t in TASK_TITLES}
    for wd, run, scores in runs:
        head = scores.get("headline", {})
        cells = []
        for task in TASK_TITLES:
            h = head.get(task)
            if not h:
                cells.append("-")
                continue
            lo, hi = (h.get("ci95") or [None, None])[:2]
            cells.append(f"{100 * h['accuracy']:.1f}" + (f" [{100 * lo:.1f}, {100 * hi:.1f}]"
                                                            if lo is not None else ""))
            if best[task] is None or h["accuracy"] > best[task][1]["accuracy"]:
                best[task] = (os.path.basename(wd), h)
        loss = run.get("final_test_loss")
        loss_s = f"{loss:.4f}" if isinstance(loss, (int, float)) else "n/a"
        lines.append(f"| {os.path.basename(wd)} | {run.get('n_params', 0):,} | {run.get('tokens', 0):,} | "
                     f"{run.get('epochs') or 1:.3g} | {loss_s} | " + " | ".join(cells) + " |")
    return lines, best


def _chance_lines(best, sizes, context_note):
    lines = []
    beaten = []
    for task, entry in best.items():
        if entry is None:
            lines.append(f"- {TASK_TITLES[task]}: no scores.")
            continue
        run, h = entry
        lo = (h.get("ci95") or [None])[0]
        above = lo is not None and lo > 0.5
        if above:
            beaten.append(TASK_TITLES[task])
        if lo is None:  # too few items for an interval (scores.json's ci95_note says why)
            verdict = "no 95% interval (" + (h.get("ci95_note") or "too few items") + ")"
        else:
            verdict = f"95% interval {'above' if above else 'includes or is below'} chance (50%)"
        lines.append(f"- {TASK_TITLES[task]}: best {100 * h['accuracy']:.1f}% ({run}, n={h.get('n_items')}"
                     f" items); {verdict}.")
    if beaten:
        lines.insert(0, "Beats chance (the best run's 95% interval above 50%; the best of the runs, "
                     "so a selection) on: " + ", ".join(beaten) + ".")
    else:
        lines.insert(0, "No benchmark is beaten with a 95% interval above chance. These models have "
                     f"{_count(min(sizes))}-{_count(max(sizes))} parameters and see a few million units "
                     "of MFCC tokens from synthetic speech: units carry little lexical identity and the "
                     "models are far below the sizes where the paper sees syntax and semantics emerge.")
    if context_note:
        lines.append(context_note)
    return lines


def _metric(scores, task, metric, convention):
    """Accuracy of one metric of a task's rows under a convention (None when absent)."""
    rows = scores.get("tasks", {}).get(task, {}).get("conventions", {}).get(convention, [])
    return next((r.get("accuracy") for r in rows if r.get("metric") == metric), None)


def _below_chance_lines(runs):
    """Runs whose 95% interval lies below chance, with what drives it: the types furthest below
    chance (sBLIMP) and the same metric under the `sum` convention (mean log-probability per unit
    favours the shorter or longer side of length-imbalanced pairs when little is learnt)."""
    lines = []
    for key, title in TASK_TITLES.items():
        below = []
        for wd, _, scores in runs:
            h = scores.get("headline", {}).get(key)
            if h and (h.get("ci95") or [None, None])[1] is not None and h["ci95"][1] < 0.5:
                below.append((h["accuracy"], os.path.basename(wd), scores, h))
        if not below:
            continue
        acc, name, scores, h = min(below, key=lambda b: b[0])
        line = (f"- {title} is below chance with a 95% interval in {len(below)} of {len(runs)} runs; "
                f"lowest {100 * acc:.1f}% ({name})")
        rows = scores.get("tasks", {}).get(h.get("benchmark"), {}).get("conventions", {}).get("mean", [])
        types = sorted((r["accuracy"], r["metric"][5:]) for r in rows
                       if str(r.get("metric", "")).startswith("type/") and r.get("accuracy") is not None
                       and r["accuracy"] < 0.5)
        if types:
            line += ", most of all on " + ", ".join(f"{t} ({100 * a:.0f}%)" for a, t in types[:3])
        total = _metric(scores, h.get("benchmark"), h.get("metric"), "sum")
        if total is not None:
            line += (f"; the same run scores {100 * total:.1f}% with the summed log-probability "
                     "instead of the mean per unit")
            if total > 0.5:   # the ranking flips with the convention
                line += (": a ranking that flips with the convention points to the two sides' "
                         "different lengths, not to anything learnt about the task")
        lines.append(line + ".")
    return lines


def _train_context(runs):
    """The runs' data.seq_len ('?' when no run's config.json says)."""
    for wd, _, _ in runs:
        try:
            seq = training_context(wd)
        except ZeroShotError:
            continue
        if seq:
            return seq
    return "?"


def _diagnostic_line(d) -> str:
    """``- check: no (detail)``, or ``**flagged**`` when the fit's check raised its flag."""
    if isinstance(d, str):
        return f"- {d}"
    return f"- {d['check']}: {'**flagged**' if d.get('flag') else 'no'} ({d.get('detail', '')})"


def _count(n):
    """9,904 -> '9.9K', 231,456 -> '231K', 999,600 -> '1M'."""
    return f"{n / 1e6:.3g}M" if n >= 999_500 else f"{n / 1e3:.3g}K"


def write_demo_report(out: str) -> str:
    """Writes ``<out>/report.md`` from the demo's folders; returns its path."""
    # infinite interval limits are written as "inf" strings: unclean reads them back as floats
    fit = unclean(_load(os.path.join(out, "fit", "fit.json"), {}))
    units = _load(os.path.join(out, "units", "manifest.json"), {})
    n_utt, hours, voices = _corpus_summary(out)
    runs_dir = os.path.join(out, "runs")
    table = read_sweep(runs_dir, min_sizes=1, min_budgets=1, min_runs=1)
    sizes = sorted({int(n) for n in table.n_params})
    runs = _runs(runs_dir)
    run_lines, best = _runs_section(runs)

    L = ["# slmjax demo: a scaling study in miniature", "",
         f"Written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on "
         f"{platform.machine()} with {os.cpu_count()} CPU cores ({platform.platform()}).", "",
         "## What was run", ""]
    tok = units.get("tokenizer", {})
    train = units.get("splits", {}).get("train", {})
    L += [f"- Corpus: {n_utt:,} synthetic stories read by {len(voices)} voices "
          f"({', '.join(voices)}; speed and pitch varied per story), "
          f"{hours:.2f} hours of 16 kHz audio (`corpus/manifest.jsonl`).",
          f"- Tokenizer: {tok.get('kind', '?')} features, k-means K={tok.get('k', '?')}, repeats "
          f"collapsed, EOS appended; vocabulary {units.get('vocab_size', '?')}; "
          f"{train.get('tokens', 0):,} training units ({units.get('frame_rate', '?')} Hz frames).",
          f"- Grid: {len(table)} runs, {len(sizes)} sizes ({', '.join(f'{n:,}' for n in sizes)} "
          f"parameters), budgets {min(table.tokens):,.0f} to {max(table.tokens):,.0f} tokens, each "
          "with its own warm-up and cosine schedule ending at its budget.",
          "- Benchmarks: generated sBLIMP, sWUGGY, sSC and tSC sets in the official layouts "
          "(`benchmarks/`), scored with the paper's convention (mean log-probability per unit).", ""]

    vp = fit.get("approach3", {}).get("vp", {})
    params = vp.get("params", {})
    alloc = vp.get("allocation", {})
    L += ["## The fitted law", "",
          "L(N, D) = E + A / N^alpha + B / D^beta, fitted by variable projection (Approach 3) with "
          "95% bootstrap intervals over runs; the paper's speech row (Table 5) beside it.", "",
          "| | E | A | B | alpha | beta | a = beta/(alpha+beta) | b |", "|---|---|---|---|---|---|---|---|"]
    L.append("| this demo | " + " | ".join(_iv(params.get(k)) for k in ("E", "A", "B", "alpha", "beta"))
             + f" | {_iv(alloc.get('a'))} | {_iv(alloc.get('b'))} |")
    pa, pb = PAPER_LAW["alpha"], PAPER_LAW["beta"]
    L.append("| paper (HuBERT units) | " + " | ".join(f"{PAPER_LAW[k]:g}" for k in PAPER_LAW)
             + f" | {pb / (pa + pb):.2f} | {pa / (pa + pb):.2f} |")
    a2 = fit.get("approach2", {})
    if "a" in a2:
        L += ["", f"Approach 2 (IsoFLOP parabolas): a = {_iv(a2['a'])}, b = {_iv(a2.get('b'))}."]
    diags = fit.get("diagnostics", [])
    if diags:
        L += ["", "Diagnostics of the fit:"] + [_diagnostic_line(d) for d in diags]
    L += ["", "## Benchmarks (accuracy %, final checkpoints, 95% bootstrap intervals)", ""] + run_lines
    L += [""] + _chance_lines(best, sizes, _context_note(runs)) + _below_chance_lines(runs)
    down = fit.get("downstream", {})
    gl = [f"- {TASK_TITLES.get(t, t)}: " + (f"not fitted: {d['skipped']}" if "skipped" in d else
                                           f"gamma = {_iv(d.get('gamma'))}")
          + (f" (paper, speech: {PAPER_GAMMA[t]})" if t in PAPER_GAMMA else "")
          for t, d in sorted(down.items()) if isinstance(d, dict) and ("gamma" in d or "skipped" in d)]
    if gl:
        redrawn = any(isinstance(d, dict) and d.get("bootstrap", "runs") != "runs" for d in down.values())
        L += ["", "Accuracy envelope vs compute, Q ~ C^gamma" + (
            " (intervals include the noise of the benchmark items the runs share)" if redrawn else "")
              + ":"] + gl
    pngs = sorted(glob.glob(os.path.join(out, "fit", "*.png")))
    if pngs:
        L += ["", "## Plots", ""] + [f"![{os.path.basename(p)}](fit/{os.path.basename(p)})" for p in pngs]
    L += ["", "## What differs from the paper", "",
          "- Speech: synthetic (espeak-ng) stories, not 160k hours of natural speech; the test loss is "
          "on held-out synthetic utterances.",
          "- Units: 39-dim MFCC + k-means (HuBERT iteration 1 style) at 100 Hz, not mHuBERT-25Hz layer "
          "11 with K=500: MFCC units are noisier and carry less linguistic identity.",
          f"- Models: {_count(min(sizes))}-{_count(max(sizes))} parameters and a context of "
          f"{_train_context(runs)} units, not 20M-823M and 2050; "
          "the fitted exponents describe this miniature regime and are not expected to match the "
          "paper's.",
          "- Benchmarks: small generated sets (a few hundred pairs), so intervals are wide.",
          "", "The full fit report, with every approach, held-out validation and the reporting "
          "checklist, is [fit/report.md](fit/report.md)."]
    path = os.path.join(out, "report.md")
    fileio.atomic_write_text(path, "\n".join(L) + "\n")
    return path
