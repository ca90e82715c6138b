"""Whether a sweep's run is done: its run.json says completed, for this run's config."""

from __future__ import annotations

import os

from slmjax import fileio
from slmjax.launch import status
from slmjax.launch.grid import Run, SweepError


def completed(run: Run) -> bool:
    """run.json says `run` completed; SweepError when its workdir's config.json is another run's
    (the sweep would otherwise report another config's results, say another data_path's, as this
    run's and train nothing)."""
    if not status.is_completed(run.workdir):
        return False
    if run.config is None:   # a Run made by hand: no training config to compare
        return True
    try:
        old = fileio.read_json_object(os.path.join(run.workdir, "config.json"))
        recorded = fileio.read_json_object(os.path.join(run.workdir, "run.json")).get("compute_dtype")
    except (OSError, ValueError, fileio.NotAJSONObject):   # none recorded: the trainer's own check
        return True
    return check_recorded(run, old, recorded)


def check_recorded(run: Run, old: dict | None, compute_dtype: str | None = None) -> bool:
    """True when the config a completed workdir recorded (`old`, config.json; None: unreadable, the
    trainer's own check then decides) is `run`'s; SweepError naming the fields when it is another's."""
    if old is None or run.config is None:
        return True
    from slmjax.train.run_files import config_conflicts, config_dict

    diff = config_conflicts(old, config_dict(run.config), compute_dtype)
    if diff:
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise SweepError(f"{run.key}: {run.workdir} holds a completed run with another config "
                         f"({'; '.join(diff[:3])}{more}): it is not this sweep's run; use a new "
                         "--root, or move that workdir aside")
    return True
