"""SLURM launcher: one sbatch job per run, one task per node holding all of that node's GPUs.

Each job's script is written to <root>/slurm/<key>.sbatch and submitted with `sbatch --parsable`.
Inside the job `srun` starts one `slmjax-train` per node; `slmjax.train.distributed` reads the
SLURM environment, makes one JAX process per node and keeps every GPU of the node visible to it.
Completed runs and runs already queued (their job name and script) are skipped, so submitting the sweep
again after a failure resumes exactly the runs that are not done. A job is requeueable: SLURM
sends its trainers SIGTERM SIGNAL_SECONDS before the time limit (`--signal`), the trainer saves a
checkpoint and records `preempted`, and the job queues itself again (`scontrol requeue`); so a run
longer than the time limit goes on by itself. A preemption SIGTERMs the trainers and may SIGTERM
the batch shell too: the shell traps it and waits for srun, so the job does not end (and SLURM does
not kill the trainers) while they save; a preempted job then queues itself again the same way. srun
turns a SIGTERM of its own into a SIGKILL of its tasks, so where the preemption signals every process
of the batch step only PreemptParameters=send_user_signal (the job's --signal, to the steps alone)
leaves the trainers their grace time. A job queues itself again only while squeue still says it
is RUNNING: `scancel` (launch/slurm_stop.sh) SIGTERMs the trainers
too, which may save and record `preempted` just the same, but its job is cancelled (CANCELLED or
COMPLETING) and stays so; a job that SLURM has requeued itself (PreemptMode=REQUEUE) is no longer
RUNNING either. `mem` is sbatch's --mem (memory per node), which srun's step inherits.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
from typing import Callable, TextIO

from slmjax import fileio
from slmjax.launch import status
from slmjax.launch.commands import TRAIN_SCRIPT, train_args
from slmjax.launch.done import completed
from slmjax.launch.grid import Run, SweepError, join

JOB_PREFIX = "slmjax-"
_NO_SQUEUE = "squeue is not on PATH: run this on a SLURM login node"
SIGNAL_SECONDS = 300   # SIGTERM this long before the time limit: time to save a checkpoint
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_MEM = re.compile(r"^\d+[KMGTkmgt]?$")   # sbatch --mem: MB, or K/M/G/T; 0: all of the node's


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    nodes: int = 1
    gpus_per_node: int = 8
    partition: str = ""
    account: str = ""
    time: str = ""               # e.g. 2-00:00:00; empty: the partition's default
    cpus_per_task: int = 0       # 0: the cluster's default
    mem: str = ""                # memory per node, e.g. 200G; empty: the cluster's default
    repo_dir: str = ""           # the repository on the cluster's shared filesystem
    venv: str = ".venv"          # relative to repo_dir, or absolute

    def validate(self) -> None:
        if self.nodes < 1:
            raise SweepError(f"--nodes must be at least 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            raise SweepError(f"--gpus_per_node must be >= 0, got {self.gpus_per_node}")
        if self.cpus_per_task < 0:
            raise SweepError(f"--cpus_per_task must be >= 0 (0: the cluster's default), "
                             f"got {self.cpus_per_task}")
        if self.mem and not _MEM.match(self.mem):
            raise SweepError(f"--mem={self.mem!r} is not a SLURM memory size (an integer in MB, or "
                             "with a K, M, G or T suffix, e.g. 200G; 0: all of the node's memory)")
        if self.time and not _TIME.match(self.time):
            raise SweepError(f"--time={self.time!r} is not a SLURM time (MM, HH:MM:SS or D-HH:MM:SS)")
        if self.time and _seconds(self.time) < 2 * SIGNAL_SECONDS:
            raise SweepError(f"--time={self.time!r}: a job gets SIGTERM {SIGNAL_SECONDS} s before its "
                             f"limit, so give it at least {2 * SIGNAL_SECONDS // 60} minutes")
        if not self.repo_dir:
            raise SweepError("--launcher=slurm needs the repository directory (--repo_dir)")


def _seconds(time: str) -> int:
    """A SLURM time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in seconds."""
    days, _, rest = time.rpartition("-")
    f = [int(x) for x in rest.split(":")]
    if days or len(f) == 3:
        h, m, s = f + [0] * (3 - len(f))
    else:
        h, m, s = 0, f[0], (f[1] if len(f) > 1 else 0)
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + s


def _slurm_file(root: str, name: str) -> str:
    """ROOT/slurm/NAME: where a run's job script and logs live."""
    return join(join(root, "slurm"), name)


def script_path(root: str, run: Run) -> str:
    return _slurm_file(root, f"{run.key}.sbatch")


def job_name(run: Run) -> str:
    return JOB_PREFIX + run.key


def _output_option(root: str, run: Run) -> str:
    """--output's value as an #SBATCH line takes it: a SLURM filename pattern (%j: the job id, so
    literal % doubled) in double quotes (sbatch splits at whitespace and cuts at #; \\" is a quote)."""
    if "\\" in root or "\n" in root:
        # A backslash turns off SLURM's filename patterns; a newline ends the #SBATCH line.
        raise SweepError(f"--root={root!r}: the SLURM launcher needs a path without backslashes "
                         "or newlines")
    pattern = _slurm_file(root, run.key).replace("%", "%%") + "-%j.out"
    return '"' + pattern.replace('"', '\\"') + '"'


def _status_command(run: Run, opts: SlurmOptions) -> str:
    return shlex.join([os.path.join(opts.venv, "bin", "python"), "-m", "slmjax.launch.status",
                       run.workdir])


def script(run: Run, root: str, opts: SlurmOptions) -> str:
    """The sbatch script of `run`, exactly as written to disk."""
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={job_name(run)}",
             f"#SBATCH --nodes={opts.nodes}",
             "#SBATCH --ntasks-per-node=1"]
    if opts.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-task={opts.gpus_per_node}")
    if opts.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={opts.cpus_per_task}")
    if opts.mem:
        lines.append(f"#SBATCH --mem={opts.mem}")
    if opts.partition:
        lines.append(f"#SBATCH --partition={opts.partition}")
    if opts.account:
        lines.append(f"#SBATCH --account={opts.account}")
    if opts.time:
        lines.append(f"#SBATCH --time={opts.time}")
    lines += [f"#SBATCH --output={_output_option(root, run)}",
              "#SBATCH --open-mode=append",
              "#SBATCH --requeue",
              f"#SBATCH --signal=TERM@{SIGNAL_SECONDS}",
              f"# {run.key}: N={run.n_params} D={run.tokens} C={run.flops:.4e} steps={run.steps}",
              "set -euo pipefail",
              f"cd {shlex.quote(opts.repo_dir)}",
              "# A preemption or scancel SIGTERMs this shell too: wait for srun (the trainers save and",
              "# exit) instead of ending the job, after which SLURM would kill them while they save.",
              """trap 'echo "slmjax: SIGTERM: waiting for the trainers to save and exit" >&2' TERM""",
              # srun does not inherit --cpus-per-task from sbatch (SLURM >= 22.05): ask again.
              "srun --kill-on-bad-exit=1 "
              + (f"--cpus-per-task={opts.cpus_per_task} " if opts.cpus_per_task else "")
              + shlex.join([os.path.join(opts.venv, "bin", TRAIN_SCRIPT)] + train_args(run)) + " &",
              "srun_pid=$!",
              "# wait returns early (> 128) when the SIGTERM comes: wait again while srun runs, then take",
              "# its exit status (a failing srun fails the job).",
              'while kill -0 "$srun_pid" 2>/dev/null; do wait "$srun_pid" || true; done',
              'wait "$srun_pid"',
              "# SIGTERM (the time limit is near, a preemption, scancel): the trainer saved. Queue again",
              "# only a job still RUNNING: not a cancelled one, nor one that SLURM requeues itself.",
              f"if [[ $({_status_command(run, opts)}) == {shlex.quote(status.status_line('preempted'))} ]]; then",
              '  if ! state=$(squeue -h -j "$SLURM_JOB_ID" -o %T); then',
              '    echo "slmjax: not requeued: squeue failed, so the state of job $SLURM_JOB_ID is unknown" >&2',
              '  elif [[ $state == RUNNING ]]; then',
              '    scontrol requeue "$SLURM_JOB_ID"',
              "  else",
              '    echo "slmjax: not requeued: job $SLURM_JOB_ID is ${state:-not in squeue}" >&2',
              "  fi",
              "fi",
              ""]
    return "\n".join(lines)


def sbatch_command(run: Run, root: str) -> list[str]:
    return ["sbatch", "--parsable", script_path(root, run)]


def _queued_jobs() -> list[tuple[str, str, str]]:
    """(job id, job name, batch script) of this user's jobs: a key queued from another root is
    another run. Scripts are compared by real path: a root reached through a symlink, or spelled
    another way, is the same root. --all: without it squeue leaves out the jobs of hidden
    partitions and of partitions not open to the user's group."""
    try:
        out = subprocess.run(["squeue", "--me", "--all", "-h", "-o", "%i %j %o"], capture_output=True,
                             text=True, check=True).stdout
    except FileNotFoundError:
        raise SweepError(_NO_SQUEUE) from None
    except subprocess.CalledProcessError as e:
        first = (e.stderr or e.stdout or "").strip().splitlines()
        raise SweepError(f"squeue failed: {first[0] if first else f'exit code {e.returncode}'}") from None
    return [(job, name, os.path.realpath(path))
            for job, name, path in (parts for parts in (line.split(" ", 2) for line in out.splitlines())
                                    if len(parts) == 3)]


def root_jobs(root: str, key_pattern: str = ".*") -> list[str]:
    """Ids of this user's jobs of the sweep at `root` whose run key fully matches `key_pattern`."""
    try:
        rx = re.compile(key_pattern)
    except re.error as e:
        raise SweepError(f"{key_pattern!r} is not a regular expression: {e}") from None
    return [job for job, name, path in _queued_jobs()
            if name.startswith(JOB_PREFIX) and rx.fullmatch(key := name[len(JOB_PREFIX):])
            and path == os.path.realpath(_slurm_file(root, f"{key}.sbatch"))]


def cancel(root: str, key_pattern: str = ".*", out: TextIO | None = None) -> int:
    """scancel the jobs `root_jobs` names; 0 on success (and when there are none)."""
    out = out or sys.stdout
    jobs = root_jobs(root, key_pattern)
    if not jobs:
        print(f"no queued jobs of {root} match {key_pattern!r}", file=out)
        return 0
    print(f"cancelling {len(jobs)} job(s): {' '.join(jobs)}", file=out, flush=True)
    try:
        return subprocess.run(["scancel", *jobs]).returncode
    except FileNotFoundError:
        raise SweepError("scancel is not on PATH: run this on a SLURM login node") from None


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fileio.atomic_write_text(path, text)


def launch(runs: list[Run], root: str, opts: SlurmOptions, *, dry_run: bool = False,
           out: TextIO | None = None, check: Callable[[list[Run]], None] | None = None) -> int:
    """Write and submit one job per run that is neither completed nor queued; 0 on success.

    `check` sees those runs before any is written or submitted (it raises SweepError to refuse)."""
    out = out or sys.stdout
    opts.validate()
    if problem := fileio.url_problem(root, "--root"):
        raise SweepError(problem)
    if not dry_run and shutil.which("squeue") is None:
        raise SweepError(_NO_SQUEUE)   # said before the lock's directory is made off the cluster
    lock = None if dry_run else _submit_lock(root)
    try:
        return _submit(runs, root, opts, dry_run, out, check)
    finally:
        if lock is not None:
            lock.release()


def _submit_lock(root: str) -> fileio.PidLock:
    """One submitting sweep per root: two at once each see the queue before the other's jobs are
    in it, and submit the same runs twice. (A file system without flock gives no lock.)"""
    os.makedirs(_slurm_file(root, ""), exist_ok=True)
    try:
        return fileio.PidLock(_slurm_file(root, ".submit.lock"), required=False)
    except fileio.LockHeld as e:
        raise SweepError(f"another sweep (pid {e.pid}) is submitting the runs of {root}; "
                         "wait for it to finish") from None


def _submit(runs: list[Run], root: str, opts: SlurmOptions, dry_run: bool, out: TextIO,
            check: Callable[[list[Run]], None] | None) -> int:
    try:
        queued = {(name, path) for _, name, path in _queued_jobs()}
    except SweepError as e:
        if not dry_run:
            raise
        # Off the cluster a dry run still shows the scripts; it cannot tell which are queued.
        print(f"# note: {e}; runs already queued are not skipped in this dry run", file=out)
        queued = set()
    todo = []
    for r in runs:
        if completed(r):
            print(f"# {r.key}: completed, skipped", file=out, flush=True)
        elif (job_name(r), os.path.realpath(script_path(root, r))) in queued:
            print(f"# {r.key}: already queued as {job_name(r)}, skipped", file=out, flush=True)
        else:
            todo.append(r)
    if check is not None:
        check(todo)
    for r in todo:
        path, argv = script_path(root, r), sbatch_command(r, root)
        if dry_run:
            print(f"# ---- {path}\n{script(r, root, opts)}{shlex.join(argv)}", file=out)
            continue
        _write(path, script(r, root, opts))
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            first = (proc.stderr or proc.stdout).strip().splitlines()
            print(f"{r.key}: sbatch failed: {first[0] if first else proc.returncode}", file=out)
            return 1
        print(f"{r.key}: submitted job {proc.stdout.strip()} ({path})", file=out, flush=True)
    return 0


def _cancel_main(argv: list[str]) -> int:
    if not 2 <= len(argv) <= 3:
        sys.exit("usage: python -m slmjax.launch.slurm ROOT [KEY_REGEX]")
    try:
        return cancel(os.path.abspath(argv[1]), *argv[2:])
    except SweepError as e:
        sys.exit(f"slurm_stop: {e}")


if __name__ == "__main__":   # cancel a sweep's jobs (launch/slurm_stop.sh)
    sys.exit(_cancel_main(sys.argv))
