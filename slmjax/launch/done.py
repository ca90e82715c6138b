"""Whether a sweep's run is done: its run.json says completed, for this run's config."""

from __future__ import annotations

from slmjax.launch import status
from slmjax.launch.grid import Run, SweepError


def completed(run: Run) -> bool:
    """run.json says `run` completed; SweepError when its workdir's config.json is another run's
    (the sweep would otherwise report another config's results, say another data_path's, as this
    run's and train nothing)."""
    return status.is_completed(run.workdir) and check_recorded(run, status.completed_config(run.workdir))


def check_recorded(run: Run, recorded: dict | None) -> bool:
    """True when the config a completed workdir recorded (status.completed_config; None:
    unreadable, the trainer's own check then decides) is `run`'s; SweepError naming the fields
    when it is another's."""
    if recorded is None or run.config is None:   # run.config None: a Run made by hand
        return True
    from slmjax.train.run_files import config_conflicts, config_dict

    diff = config_conflicts(recorded["config"], config_dict(run.config), recorded["compute_dtype"])
    if diff:
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise SweepError(f"{run.key}: {run.workdir} holds a completed run with another config "
                         f"({'; '.join(diff[:3])}{more}): it is not this sweep's run; use a new "
                         "--root, or move that workdir aside")
    return True
