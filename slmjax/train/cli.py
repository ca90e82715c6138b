"""`slmjax-train`: train one model, or (--dry_run) print what the run would be and stop.

    slmjax-train --config=configs/train.py:s20m --workdir=runs/s20m [--config.train.steps=100]
    slmjax-train --config=configs/train.py:s85m --dry_run
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

from slmjax import cli_help, hostalloc
from slmjax.fileio import url_problem
from slmjax.train import distributed  # defines --coordinator_address, --num_processes, --process_id
from slmjax.train import preemption

_CONFIG = cli_help.DEFINE_config_file(
    "config", None, "Training config file, e.g. configs/train.py:s20m (sizes: s20m s85m s155m "
    "s309m s823m tiny). Override fields with --config.train.steps=100 etc.", lock_config=True)
_WORKDIR = cli_help.DEFINE_path("workdir", None, "Run directory (checkpoints, metrics, config).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Validate the config, print the run plan as one "
                             "JSON line (params, FLOPs/token, steps, tokens, mesh) and train nothing.")


def _fail(message: str) -> None:
    for line in message.splitlines():
        print(f"slmjax-train: {line}", file=sys.stderr)
    sys.exit(2)


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    config = _CONFIG.value
    if config is None:
        _fail("--config is required, e.g. --config=configs/train.py:s20m")
    if not _DRY_RUN.value:  # a preemption notice during start-up ends the run cleanly, not by kill
        preemption.install()
    import jax

    from slmjax.train import mesh
    from slmjax.train.validate import ConfigError, run_plan, validate

    split = mesh.request_cpu_split(config)  # before JAX starts: one device per CPU core
    try:  # joins the processes of a pod / multi-node job; no-op for one process
        distributed.initialize()
    except distributed.DistributedError as e:  # an incomplete or failing process layout
        _fail(str(e))
    mesh.adopt_cpu_split(config, split)
    n_devices = jax.device_count()
    try:
        validate(config, n_devices)
    except ConfigError as e:
        _fail(str(e))
    plan = run_plan(config, n_devices)
    if _DRY_RUN.value and config.data.get("kind") == "units":
        # the unit datasets are opened as the run opens them at its start: a missing path, a
        # corrupt manifest or shard, or a vocabulary other than the model's is the run's own one
        # line here, not a plan printed for a run that would stop before its first step
        from slmjax.data import DataError, build_pipeline

        try:
            build_pipeline(config, jax.process_index(), jax.process_count())
        except DataError as e:
            _fail(str(e))
    if _DRY_RUN.value:
        print(f"model {plan['size']}: {plan['n_params']:,} params ({plan['n_params_nonemb']:,} "
              f"non-embedding); {plan['steps']:,} steps x {plan['batch_tokens']:,} tokens = "
              f"{plan['tokens']:,} tokens on mesh {plan['mesh']} ({jax.default_backend()})")
        print(json.dumps(plan))
        return
    if not _WORKDIR.value:
        _fail("--workdir is required to train (or pass --dry_run)")
    if problem := url_problem(_WORKDIR.value, "--workdir"):
        _fail(problem)
    from slmjax.train.loop import USER_ERRORS, train  # the training loop (data, checkpoints, metrics)

    try:
        train(config, _WORKDIR.value)
    except USER_ERRORS as e:
        _fail(str(e))


def _parse_flags(argv):
    """Flag errors (a bad --config file or size included) as one line, without a traceback."""
    try:
        rest = flags.FLAGS(argv)
        if _CONFIG.value is not None:
            _CONFIG.value.keys()  # ml_collections defers a missing config file's error to first use
        return rest
    except Exception as e:  # pylint: disable=broad-except  # only flags and the config file ran
        _fail(_flag_error(e, argv))


def _flag_error(e: Exception, argv) -> str:
    """One line for a bad flag, a --config.a.b=v naming no field, or a missing or broken file."""
    named = [a.split("=")[0][2:] for a in argv if a.startswith("--config.")]
    if isinstance(e, flags.Error):
        last = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()][-1]
        return last.split(": ", 1)[1] if last.startswith(("ValueError", "KeyError")) else last
    if isinstance(e, (AttributeError, KeyError)) and named:  # an override naming no field
        while e.args and isinstance(e.args[0], Exception):  # AttributeError(KeyError(message))
            e = e.args[0]
        key, *hint = str(e.args[0] if e.args else e).splitlines()
        key = key.strip("\"' ")
        hits = [n for n in named if n.split(".")[-1] == key] or named
        return f"unknown config field {', '.join(hits)} (no field {'; '.join([repr(key), *hint])})"
    if isinstance(e, SyntaxError):
        detail = f"{type(e).__name__}: {e.msg} ({e.filename}, line {e.lineno})"
    elif isinstance(e, OSError):  # missing or unreadable; ml_collections wraps the first error
        detail = str(e.__cause__ or e).strip().splitlines()[-1].strip()
    else:
        detail = f"{type(e).__name__}: {e}".strip().splitlines()[0]
    return f"cannot load the --config file: {detail}"


def run() -> None:
    """Console entry point."""
    hostalloc.use_fast_allocator()
    cli_help.adopt(__name__)
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
