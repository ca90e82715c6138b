"""TPU pod launcher: each run on every worker of a Cloud TPU VM slice, one run after another.

For every run the launcher executes, from the machine it runs on,

    gcloud compute tpus tpu-vm ssh NAME --zone=ZONE [--project=P] --worker=all \
        --command='cd REPO && echo $$ > ~/slmjax-train.pid && exec VENV/bin/slmjax-train \
                   --config=... --workdir=ROOT/KEY ...'

and waits for it. Every worker starts the same trainer; `slmjax.train.distributed` detects the slice
and makes one JAX process per worker. ROOT must be the same path on all workers (a bucket mounted
at /mnt/gcs by gcsfuse, or a shared filesystem), and need not exist where the launcher runs: the
runs' run.json statuses are read on worker 0 (`--worker=0`), before the sweep to skip completed
runs and after each run, which counts as done only when its status is `completed` (a trainer
stopped by SIGTERM saves, records `preempted` and exits 0). The same call reports a trainer still
running on worker 0 (another sweep's, or one whose ssh session dropped): the sweep does not start,
or stops, rather than start a second trainer on the same chips. Workers are prepared once with
launch/tpu_setup.sh (see the README).

Before any run starts, each run to launch is checked against the slice's JAX devices, as the SLURM
launcher checks its jobs: a mesh that cannot fill them or a batch that does not divide into its
shards (the paper's 252, 456 and 494 on 16 devices) is refused in one line instead of failing at
its start on the pod. The count comes from the accelerator type, --tpu_type or else

    gcloud compute tpus tpu-vm describe NAME --zone=ZONE [--project=P] --format=value(acceleratorType)

(a dry run without --tpu_type does not ask, and a slice gcloud does not describe by a type known
here, e.g. one made with --topology, starts unchecked; both say so in a note): v2-N and v3-N have N
TensorCores, each one JAX device; v4-N and v5p-N have N TensorCores, two per chip, which megacore
makes one JAX device, so N/2 devices; v5litepod-N (also written v5e-N) and v6e-N have N chips of
one TensorCore, N devices.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from typing import Callable, TextIO

from slmjax.launch import status
from slmjax.launch.commands import TRAIN_SCRIPT, train_args
from slmjax.launch.done import check_recorded, completed
from slmjax.launch.grid import Run, SweepError

PIDFILE = "~/slmjax-train.pid"   # the trainer's pid on each worker, read by launch/tpu_stop.sh
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./~$@+-]+$")
_TPU_TYPE = re.compile(r"^(v2|v3|v4|v5p|v5litepod|v5e|v6e)-([1-9][0-9]*)$")
_GCLOUD_MISSING = "gcloud is not installed or not on PATH (Google Cloud SDK)"


def jax_devices(accelerator_type: str, what: str = "--tpu_type") -> int:
    """JAX devices of a slice of `accelerator_type` (e.g. v4-32: 16); one clear error otherwise.

    v2/v3: the number counts TensorCores, each one JAX device. v4/v5p: it counts TensorCores, two
    per chip, joined by megacore into one device per chip. v5e (v5litepod-N or v5e-N) and v6e: it
    counts chips, one TensorCore and one device each (Cloud TPU system architecture pages)."""
    m = _TPU_TYPE.match(accelerator_type)
    if m and m[1] in ("v4", "v5p") and int(m[2]) % 2 == 0:
        return int(m[2]) // 2
    if m and m[1] not in ("v4", "v5p"):
        return int(m[2])
    raise SweepError(f"{what}={accelerator_type!r} is not a TPU type this sweep knows (v2-N, v3-N, "
                     "v4-N, v5p-N with N even, v5litepod-N, v5e-N or v6e-N)")


@dataclasses.dataclass(frozen=True)
class TpuOptions:
    name: str
    zone: str
    project: str = ""
    tpu_type: str = ""           # the slice's accelerator type, e.g. v4-32 ("": ask gcloud)
    repo_dir: str = "~/slmjax"   # the repository on every worker (launch/tpu_setup.sh puts it there)
    venv: str = ".venv"          # relative to repo_dir, or absolute

    def validate(self) -> None:
        if not self.name:
            raise SweepError("--launcher=tpu needs --tpu_name (the TPU VM slice)")
        if not self.zone:
            raise SweepError("--launcher=tpu needs --zone (e.g. us-central2-b)")
        for flag, value in (("--repo_dir", self.repo_dir), ("--venv", self.venv)):
            if not _SAFE_PATH.match(value):
                raise SweepError(f"{flag}={value!r}: use a path without spaces or quotes")
        if self.tpu_type:
            jax_devices(self.tpu_type)


def _in_venv(opts: TpuOptions, program: str, args: list[str], first: str = "") -> str:
    """A worker's shell command: in the repository, `first`, then exec the venv's `program`."""
    return f"cd {opts.repo_dir} && {first}exec {opts.venv}/bin/{program} " + shlex.join(args)


def remote_command(run: Run, opts: TpuOptions) -> str:
    """The shell command every worker runs for `run`."""
    return _in_venv(opts, TRAIN_SCRIPT, train_args(run), first=f"echo $$ > {PIDFILE} && ")


def _gcloud(opts: TpuOptions, verb: str) -> list[str]:
    argv = ["gcloud", "compute", "tpus", "tpu-vm", verb, opts.name, f"--zone={opts.zone}"]
    return argv + [f"--project={opts.project}"] * bool(opts.project)


def _ssh(opts: TpuOptions, worker: str, command: str) -> list[str]:
    return _gcloud(opts, "ssh") + [f"--worker={worker}", f"--command={command}"]


def describe_command(opts: TpuOptions) -> list[str]:
    """The argv that asks gcloud for the slice's accelerator type."""
    return _gcloud(opts, "describe") + ["--format=value(acceleratorType)"]


def accelerator_type(opts: TpuOptions) -> str:
    """The slice's accelerator type: --tpu_type, else what gcloud describes (e.g. v4-32)."""
    if opts.tpu_type:
        return opts.tpu_type
    try:
        proc = subprocess.run(describe_command(opts), capture_output=True, text=True)
    except FileNotFoundError:
        raise SweepError(_GCLOUD_MISSING) from None
    found = proc.stdout.strip().splitlines()[-1:]
    if proc.returncode != 0 or not found or not found[0].strip():
        last = proc.stderr.strip().splitlines()[-1:]
        if proc.returncode == 0:   # e.g. a slice created with --type and --topology
            why = "it printed no acceleratorType"
        else:
            why = last[0] if last else f"exit code {proc.returncode}"
        raise SweepError(f"could not read the accelerator type of {opts.name} in {opts.zone} "
                         f"(gcloud compute tpus tpu-vm describe): {why}")
    return found[0].strip()


def slice_devices(opts: TpuOptions) -> tuple[str, int]:
    """(accelerator type, JAX devices) of the slice."""
    found = accelerator_type(opts)
    what = "--tpu_type" if opts.tpu_type else f"gcloud's acceleratorType of {opts.name}"
    return found, jax_devices(found, what)


def gcloud_command(run: Run, opts: TpuOptions) -> list[str]:
    """The exact argv the launcher executes for `run`."""
    return _ssh(opts, "all", remote_command(run, opts))


def remote_state(runs: list[Run], opts: TpuOptions) -> tuple[list[str | None], int | None, list]:
    """Read on worker 0: the run.json status of each run (None: no readable run.json), the pid
    of a trainer still running there (None: none), and each completed run's recorded config
    (status.completed_config; None for the others)."""
    argv = _ssh(opts, "0", _in_venv(opts, "python", ["-m", "slmjax.launch.status",
                                                     f"--trainer_pidfile={PIDFILE}", "--configs"]
                                     + [r.workdir for r in runs]))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError:
        raise SweepError(_GCLOUD_MISSING) from None
    found = status.parse_status_lines(proc.stdout)
    if (proc.returncode != 0 or len(found) != len(runs)
            or status.TRAINER_TAG not in proc.stdout):
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise SweepError(f"could not read the runs' status on worker 0 of {opts.name}: "
                         f"{last[0] if last else f'exit code {proc.returncode}'}")
    configs = status.parse_config_lines(proc.stdout)
    if len(configs) != len(runs):   # a worker's checkout from before config lines
        configs = [None] * len(runs)
    return found, status.parse_trainer_line(proc.stdout), configs


def _busy(pid: int, opts: TpuOptions) -> str:
    stop = shlex.join(["launch/tpu_stop.sh", opts.name, opts.zone] + [opts.project] * bool(opts.project))
    return (f"a trainer (pid {pid}) is still running on worker 0 of {opts.name} (another sweep's "
            f"run, or one whose launcher ended): wait for it to exit, or stop it with {stop}")


def _after_run(run: Run, rc: int, opts: TpuOptions) -> tuple[str | None, int | None, str | None]:
    """(status, live trainer pid, why the state is unknown) on worker 0 after `run`'s ssh ended
    with `rc`; after a failed ssh whose state cannot be read either, (None, None, the reason)."""
    try:
        statuses, trainer, _ = remote_state([run], opts)
    except SweepError as e:
        if rc == 0:
            raise
        return None, None, str(e)
    return statuses[0], trainer, None


def launch(runs: list[Run], root: str, opts: TpuOptions, *, dry_run: bool = False,
           keep_going: bool = False, out: TextIO | None = None,
           check: Callable[[list[Run], str, int], None] | None = None) -> int:
    """Run `runs` one after another on all workers; 0 when all succeeded.

    `check(todo, accelerator type, JAX devices)` sees the runs to start, before any starts (it
    raises SweepError to refuse). A dry run without --tpu_type does not ask gcloud, and a slice
    whose type gcloud does not tell (or this module does not know) is not checked: a note says so."""
    out = out or sys.stdout
    opts.validate()
    failed = []
    if dry_run:
        if runs and not os.path.isdir(root):
            # A launch reads the statuses on worker 0; a dry run reads what this machine sees.
            print(f"# note: {root} is not visible on this machine: a launch reads the runs' status "
                  f"on worker 0 of {opts.name} and skips those completed there; this dry run lists "
                  "every run", file=out, flush=True)
        done = [completed(r) for r in runs]
    elif runs:
        statuses, trainer, configs = remote_state(runs, opts)
        if trainer is not None:   # a second trainer on the same chips fails to start, or worse
            raise SweepError(_busy(trainer, opts))
        # completed, and by this sweep's config (another config's results are not this run's)
        done = [s == "completed" and check_recorded(r, c) for r, s, c in zip(runs, statuses, configs)]
    todo = [r for r, d in zip(runs, done) if not d]
    if check is not None and todo:
        unchecked = ("a launch asks gcloud for its accelerator type" if dry_run and not opts.tpu_type
                     else None)
        if unchecked is None:
            try:
                devices = slice_devices(opts)
            except SweepError as e:
                if opts.tpu_type:   # a type given by hand that is not one: a typo
                    raise
                # a slice gcloud does not describe by type (made with --topology, a newer TPU
                # generation): the runs start unchecked, as they did before there was a check
                unchecked = str(e)
        if unchecked is None:
            check(todo, *devices)
        else:
            print(f"# note: the runs' batches were not checked against the devices of {opts.name}: "
                  f"{unchecked}; give --tpu_type (e.g. v4-32) to check them", file=out, flush=True)
    for i, r in enumerate(runs):
        if done[i]:
            print(f"# {r.key}: completed, skipped", file=out, flush=True)
            continue
        argv = gcloud_command(r, opts)
        if dry_run:
            print(shlex.join(argv), file=out)
            continue
        print(f"[{i + 1}/{len(runs)}] {r.key}: {shlex.join(argv)}", file=out, flush=True)
        try:
            rc = subprocess.run(argv).returncode
        except FileNotFoundError:
            raise SweepError(_GCLOUD_MISSING) from None
        ended, trainer, unknown = _after_run(r, rc, opts)
        if rc != 0 or ended != "completed":
            why = f"exit code {rc}" if rc else f"exit code 0 but run.json status is {ended!r}"
            print(f"[{i + 1}/{len(runs)}] {r.key}: failed ({why}); launch/tpu_stop.sh "
                  "stops what is left on the workers", file=out, flush=True)
            failed.append(r.key)
        if trainer is not None:   # e.g. the ssh session dropped while the trainer went on
            print(f"[{i + 1}/{len(runs)}] {_busy(trainer, opts)}", file=out, flush=True)
            break
        if unknown is not None:   # the ssh failed and worker 0 does not answer: a trainer may live
            print(f"[{i + 1}/{len(runs)}] {unknown}, so a trainer may still be running there; "
                  "the sweep stops (whatever --keep_going says): check the workers, or stop them "
                  "with launch/tpu_stop.sh, then launch again", file=out, flush=True)
            break
        if failed and failed[-1] == r.key and not keep_going:
            break
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=out)
        return 1
    return 0
