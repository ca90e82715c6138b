"""slmjax-sweep: expand a sweep config into runs, print the plan, and launch it.

    slmjax-sweep --config=configs/sweeps/paper_grid.py --root=DIR [--launcher=local|tpu|slurm]
                 [--dry_run] [--only=REGEX] [--config.field=value ...]

--dry_run prints the table and exactly the commands (tpu), scripts and sbatch calls (slurm) or
trainer command lines (local) that would run, and launches nothing.

Before anything is launched on a TPU slice or SLURM, each run's mesh and batch are checked against
the JAX devices it will have (slurm: --nodes x --gpus_per_node; tpu: the slice's accelerator type,
--tpu_type or else `gcloud compute tpus tpu-vm describe`), and runs that slmjax-train would refuse
at their start are refused in one line.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from slmjax import cli_help
from slmjax.fileio import url_problem
from slmjax.launch import grid, local, slurm, tpu

_CONFIG = cli_help.DEFINE_config_file(
    "config", None, "Sweep config file (configs/sweeps/*.py); override fields with --config.x=v.")
_ROOT = flags.DEFINE_string("root", None, "Sweep root: one workdir per run, named by its key.")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "tpu", "slurm"], "Where the runs go.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the plan and the exact commands; launch nothing.")
_ONLY = flags.DEFINE_string("only", None, "Regular expression: launch only the runs whose key matches.")
_KEEP_GOING = flags.DEFINE_bool("keep_going", False, "local/tpu: go on with the next run after a failure.")
_STREAM = flags.DEFINE_bool("stream", False, "local: show each run's output here instead of "
                            "writing it to ROOT/logs/KEY.log.")
_REPO_DIR = flags.DEFINE_string(
    "repo_dir", None, "The repository where the runs execute: tpu default ~/slmjax on every worker; "
    "slurm default the current directory (on the shared filesystem).")
_VENV = flags.DEFINE_string("venv", ".venv", "Virtual environment of the runs (relative to --repo_dir).")
# TPU pod slices.
_TPU_NAME = flags.DEFINE_string("tpu_name", None, "tpu: name of the TPU VM slice.")
_ZONE = flags.DEFINE_string("zone", None, "tpu: zone of the slice, e.g. us-central2-b.")
_PROJECT = flags.DEFINE_string("project", None, "tpu: Google Cloud project (default: gcloud's).")
_TPU_TYPE = flags.DEFINE_string(
    "tpu_type", None, "tpu: the slice's accelerator type (v4-32, v5litepod-16, v5p-128, v6e-8, ...), "
    "whose JAX devices each run's batch must divide over; default: asked of gcloud (tpu-vm describe).")
# SLURM GPU clusters.
_PARTITION = flags.DEFINE_string("slurm_partition", None, "slurm: partition.")
_ACCOUNT = flags.DEFINE_string("account", None, "slurm: account to charge.")
_NODES = flags.DEFINE_integer("nodes", 1, "slurm: nodes per run (one task per node).")
_GPUS = flags.DEFINE_integer("gpus_per_node", 8, "slurm: GPUs per node (all given to its one task).")
_CPUS = flags.DEFINE_integer("cpus_per_task", 0, "slurm: CPUs per task (0: the cluster's default).")
_MEM = flags.DEFINE_string("mem", None, "slurm: memory per node, e.g. 200G (an integer in MB, or with "
                           "a K, M, G or T suffix; 0: all of the node's memory); default: the cluster's.")
_TIME = flags.DEFINE_string("time", None, "slurm: time limit per job, e.g. 2-00:00:00.")


def _repo_root(config_file: str | None) -> str | None:
    """The repository holding the sweep config (configs/sweeps/FILE.py -> its grandparent's parent)."""
    if not config_file:
        return None
    path = os.path.abspath(config_file.split(":", 1)[0])
    return os.path.dirname(os.path.dirname(os.path.dirname(path)))


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    cfg = _CONFIG.value
    if cfg is None:
        raise grid.SweepError("--config is required, e.g. --config=configs/sweeps/cpu_mini.py")
    root = _ROOT.value
    if not root:
        raise grid.SweepError("--root is required: the directory for the run workdirs")
    launcher = _LAUNCHER.value
    for problem in (url_problem(root, "--root"), url_problem(cfg.get("data_path", ""), "--config.data_path")):
        if problem:
            raise grid.SweepError(problem)
    if launcher == "tpu" and not os.path.isabs(root):
        raise grid.SweepError("--launcher=tpu needs --root as an absolute path that every worker sees "
                              "(e.g. /mnt/gcs/runs/NAME: the bucket launch/tpu_setup.sh mounts)")
    if launcher != "tpu":   # (absl takes --root=~/x literally: no shell expands a ~ after '=')
        root = os.path.abspath(os.path.expanduser(root))
    opts = None
    if launcher == "tpu":
        opts = tpu.TpuOptions(name=_TPU_NAME.value or "", zone=_ZONE.value or "",
                              project=_PROJECT.value or "", tpu_type=_TPU_TYPE.value or "",
                              repo_dir=_REPO_DIR.value or "~/slmjax",
                              venv=_VENV.value)
    elif launcher == "slurm":
        opts = slurm.SlurmOptions(nodes=_NODES.value, gpus_per_node=_GPUS.value,
                                  partition=_PARTITION.value or "", account=_ACCOUNT.value or "",
                                  time=_TIME.value or "", cpus_per_task=_CPUS.value,
                                  mem=_MEM.value or "",
                                  # The job script quotes these paths, so no shell expands
                                  # a ~ in them: expand it here (home is shared on a cluster).
                                  repo_dir=os.path.abspath(os.path.expanduser(
                                      _REPO_DIR.value or os.getcwd())),
                                  venv=os.path.expanduser(_VENV.value))
    if opts is not None:
        opts.validate()   # before any expansion: a wrong launcher flag is the first thing said

    if cfg.get("require_data_path", False) and not cfg.get("data_path", ""):
        message = (f"{cfg.get('name', 'this sweep')} trains on a unit dataset: give it with "
                   "--config.data_path=DIR (several joined by ',')")
        if not _DRY_RUN.value:
            raise grid.SweepError(message)
        print(f"# note: {message}; the commands below use the training config's data", flush=True)

    repo_root = _repo_root(config_flags.get_config_filename(flags.FLAGS["config"]))
    runs = grid.select(grid.expand(cfg, root, repo_root), _ONLY.value)
    print(grid.table(runs), flush=True)

    if launcher == "local":
        from slmjax.launch.trainconf import resolve_path

        train_config = os.path.abspath(resolve_path(cfg.train_config, repo_root))
        return local.launch(runs, root, dry_run=_DRY_RUN.value, keep_going=_KEEP_GOING.value,
                            train_config=train_config, stream=_STREAM.value)
    if launcher == "tpu":
        def fit_the_slice(todo: list[grid.Run], tpu_type: str, n_devices: int) -> None:
            grid.check_devices(todo, n_devices,
                               f"{opts.name}, a {tpu_type} slice of {n_devices} JAX devices")

        return tpu.launch(runs, root, opts, dry_run=_DRY_RUN.value, keep_going=_KEEP_GOING.value,
                          check=fit_the_slice)

    def fit_the_jobs(todo: list[grid.Run]) -> None:   # each job's JAX devices are known: check them
        if opts.gpus_per_node:
            grid.check_devices(todo, opts.nodes * opts.gpus_per_node,
                               f"--nodes={opts.nodes} x --gpus_per_node={opts.gpus_per_node} GPUs")

    return slurm.launch(runs, root, opts, dry_run=_DRY_RUN.value, check=fit_the_jobs)


def _main(argv: list[str]) -> None:
    try:
        sys.exit(main(argv))
    except grid.SweepError as e:
        sys.exit(f"slmjax-sweep: {e}")
    except OSError as e:   # the sweep file itself could not be loaded (config_flags loads lazily)
        sys.exit(f"slmjax-sweep: {_last_line(str(e))}")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errno = [ln for ln in lines if ln.startswith("[Errno")]
    return errno[-1] if errno else lines[-1]


def _parse_flags(argv: list[str]) -> list[str]:
    """Flag errors (a missing sweep file, an unknown --config.field) as one line, no traceback."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, OSError) as e:
        sys.exit(f"slmjax-sweep: {_last_line(str(e))}")
    except (AttributeError, KeyError) as e:   # --config.a=v naming a field the sweep lacks
        named = [a.split("=")[0][len("--config."):] for a in argv if a.startswith("--config.")]
        key = str(e).strip("\"' ")
        hits = [n for n in named if key in n.split(".")] or named   # the missing part may be inner
        sys.exit(f"slmjax-sweep: the sweep config has no field {', '.join(hits)}")
    except SyntaxError as e:   # the sweep file itself does not parse
        sys.exit(f"slmjax-sweep: cannot load the --config file: SyntaxError: {e.msg} "
                 f"({e.filename}, line {e.lineno})")
    except Exception as e:  # noqa: BLE001 - the sweep file raised as it ran (get_config, imports)
        from slmjax.errortext import describe

        sys.exit(f"slmjax-sweep: cannot load the --config file: {describe(e)}")


def run() -> None:
    """Console entry point (slmjax-sweep)."""
    cli_help.adopt(__name__)
    app.run(_main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
