"""slmjax-fit: scaling-law fits, plots and a report from a sweep root or a run-table CSV.

  slmjax-fit --runs=SWEEP_ROOT_OR_CSV --out=DIR [--bootstrap=1000] [--experiment=NAME]

Writes DIR/fit.json, DIR/*.png, DIR/report.md and DIR/runs.csv (the validated run table with every
derived column: N total and non-embedding, D, unique tokens, epochs, C per FLOP convention, accuracies).

fit.json is standard JSON (see ``fitjson``: infinite numbers as the strings "inf" / "-inf").
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

from slmjax import cli_help, fileio
from slmjax.analysis.scaling import downstream, plots, report, simulate
from slmjax.analysis.scaling.errors import FitInputError
from slmjax.analysis.scaling.fit import FitOptions, analyse
from slmjax.analysis.scaling.fitjson import clean, dumps_fit
from slmjax.analysis.scaling.sweep import read_runs

FLAGS = flags.FLAGS
cli_help.DEFINE_path("runs", None, "Sweep root (one workdir per run) or a run-table CSV.")
cli_help.DEFINE_path("out", None, "Output directory for fit.json, plots and report.md.")
flags.DEFINE_string("experiment", None, "Keep only these rows of a CSV with an `experiment` column.")
flags.DEFINE_enum("n_param", "total", ["total", "nonemb"], "Parameter count N: total or non-embedding.")
flags.DEFINE_enum("flops", "6N", ["6N", "6N_nonemb", "6N_attn"], "Compute axis for Approach 1 and downstream (Approach 2 and the "
                  "allocation use C = 6ND; the report gives Approach 2 under every convention).")
flags.DEFINE_integer("bootstrap", 1000, "Bootstrap replicates (variable projection and derived quantities).")
flags.DEFINE_integer("huber_bootstrap", 200, "Bootstrap replicates for the paper's Huber objective.")
flags.DEFINE_integer("seed", 0, "Seed of the bootstrap resampling.")
flags.DEFINE_integer("workers", 0, "Processes for bootstrap refits (0: all cores).")
flags.DEFINE_float("level", 0.95, "Interval level.")
flags.DEFINE_float("delta", 0.03, "Huber delta of the paper's objective (Chinchilla used 1e-3).")
flags.DEFINE_integer("n_refine", 64, "L-BFGS runs from the best grid starts of the paper's objective.")
flags.DEFINE_float("holdout", 0.2, "Fraction of runs (largest budgets) held out for validation.")
flags.DEFINE_list("target_flops", ["1e21"], "Compute levels at which to report N*(C), D*(C), L*(C).")
flags.DEFINE_list("target_acc", [], "task=accuracy pairs (sblimp=0.65, or percent sblimp=65): "
                  "compute needed to reach them.")
cli_help.DEFINE_path("reference", None, "CSV task,gamma[,label] of reference gammas (default: the paper's rows).")
flags.DEFINE_bool("sigmoid", True, "Fit the chance-floored sigmoid of accuracy vs loss.")
flags.DEFINE_enum("downstream_bootstrap", "shared", ["shared", "both", "runs", "items"],
                  "What downstream replicates redraw: runs, plus the shift of all runs' accuracy on "
                  "redrawn benchmark items (shared); runs and rescored items (both: conservative); "
                  "runs only; or items only (runs fixed). Items are redrawn for a task "
                  "when every scored run has its items/<benchmark>.tsv (slmjax-eval writes them).")


def _parse_targets(items):
    """--target_acc items as {task: number}; ``analyse`` checks units and tasks against the table."""
    out = {}
    for it in items:
        task, _, val = it.partition("=")
        task = task.strip().lower()
        try:
            v = float(val)
        except ValueError:
            v = None
        if not task or v is None or task in out:
            raise FitInputError(f"--target_acc item {it!r} is not task=accuracy (one item per task)")
        out[task] = v
    return out


def _check_out(out):
    """One clear line, before any fitting, when ``out`` cannot be made and written."""
    problem = fileio.dir_write_problem(out)
    if problem:
        raise FitInputError(f"--out={out}: {problem}")


def main(runs, out, **kw):
    """Run the analysis and write fit.json, the figures and report.md; returns the result dict."""
    table = read_runs(runs, experiment=kw.pop("experiment", None))
    opt = FitOptions(**kw)
    opt.validate()   # bad input leaves no --out behind: _check_out makes it
    _check_out(out)
    res, p = analyse(table, opt)
    os.makedirs(out, exist_ok=True)
    simulate.write_csv(table.rows(), os.path.join(out, "runs.csv"))
    figs = plots.write_all(p, out, downstream.read_reference(opt.reference))
    res["figures"] = figs
    path = os.path.join(out, "fit.json")
    fileio.atomic_write_text(path, dumps_fit(res))
    report.write(res, figs, out)
    return res


def run_main(argv):
    del argv
    if not FLAGS.runs or not FLAGS.out:
        sys.exit("slmjax-fit: --runs and --out are required (see --help)")
    try:
        tf = tuple(float(x) for x in FLAGS.target_flops)
    except ValueError:
        sys.exit(f"slmjax-fit: --target_flops must be numbers, got {FLAGS.target_flops}")
    try:
        res = main(FLAGS.runs, FLAGS.out, experiment=FLAGS.experiment, n_param=FLAGS.n_param, flops=FLAGS.flops,
                   bootstrap=FLAGS.bootstrap, huber_bootstrap=FLAGS.huber_bootstrap, seed=FLAGS.seed,
                   workers=FLAGS.workers, level=FLAGS.level, delta=FLAGS.delta, n_refine=FLAGS.n_refine,
                   holdout=FLAGS.holdout, target_flops=tf, target_acc=_parse_targets(FLAGS.target_acc),
                   reference=FLAGS.reference, sigmoid=FLAGS.sigmoid,
                   downstream_bootstrap=FLAGS.downstream_bootstrap)
    except FitInputError as e:
        sys.exit(f"slmjax-fit: {e}")
    a = res["approach3"]["vp"]["allocation"]["a"]
    flagged = [d["check"] for d in res["diagnostics"] if d["flag"]]
    print(json.dumps(clean({"out": FLAGS.out, "a": a["value"], "a_interval": [a["lo"], a["hi"]],
                             "flags": flagged, "seconds": res["timing"]["total_s"]})))


def run():
    cli_help.adopt(__name__)
    app.run(run_main)


if __name__ == "__main__":
    run()
