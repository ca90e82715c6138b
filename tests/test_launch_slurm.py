"""SLURM launcher: the exact sbatch scripts (golden strings), submission, and that the scripts run.

Stand-ins for sbatch, squeue and srun on PATH: sbatch records the script and prints a job id, squeue
lists one already-queued job, srun runs its command as 2 tasks with the SLURM variables set, and the
trainer is a stand-in that records what it was given.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO}

GOLDEN_SCRIPT = """\
#!/bin/bash
#SBATCH --job-name=slmjax-s823m_d8.2e10
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-task=8
#SBATCH --mem=200G
#SBATCH --partition=gpu
#SBATCH --account=acct
#SBATCH --time=2-00:00:00
#SBATCH --output="/shared/runs/paper/slurm/s823m_d8.2e10-%j.out"
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=TERM@300
# s823m_d8.2e10: N=823179264 D=82317926400 C=4.0657e+20 steps=66045
set -euo pipefail
cd /shared/slmjax
# A preemption or scancel SIGTERMs this shell too: wait for srun (the trainers save and
# exit) instead of ending the job, after which SLURM would kill them while they save.
trap 'echo "slmjax: SIGTERM: waiting for the trainers to save and exit" >&2' TERM
srun --kill-on-bad-exit=1 .venv/bin/slmjax-train --config=configs/train.py:s823m \
--workdir=/shared/runs/paper/s823m_d8.2e10 --config.data.kind=units --config.data.path=/shared/units \
--config.data.seq_len=2050 --config.train.batch_size=608 --config.train.tokens=82317926400 \
--config.train.steps=66045 &
srun_pid=$!
# wait returns early (> 128) when the SIGTERM comes: wait again while srun runs, then take
# its exit status (a failing srun fails the job).
while kill -0 "$srun_pid" 2>/dev/null; do wait "$srun_pid" || true; done
wait "$srun_pid"
# SIGTERM (the time limit is near, a preemption, scancel): the trainer saved. Queue again
# only a job still RUNNING: not a cancelled one, nor one that SLURM requeues itself.
if [[ $(.venv/bin/python -m slmjax.launch.status /shared/runs/paper/s823m_d8.2e10) == 'slmjax-status "preempted"' ]]; then
  if ! state=$(squeue -h -j "$SLURM_JOB_ID" -o %T); then
    echo "slmjax: not requeued: squeue failed, so the state of job $SLURM_JOB_ID is unknown" >&2
  elif [[ $state == RUNNING ]]; then
    scontrol requeue "$SLURM_JOB_ID"
  else
    echo "slmjax: not requeued: job $SLURM_JOB_ID is ${state:-not in squeue}" >&2
  fi
fi
""".replace("\\\n", "")

FAKES = {
    "sbatch": """\
        #!/usr/bin/env bash
        [[ $1 == --parsable ]] || exit 2
        echo "$2" >> "$FAKE_SLURM/submitted"
        echo $((1000 + $(wc -l < "$FAKE_SLURM/submitted")))
        """,
    "squeue": """\
        #!/usr/bin/env bash
        # In a job: the job's state (FAKE_JOB_STATE, default RUNNING; FAIL: squeue fails).
        if [[ $* == "-h -j ${SLURM_JOB_ID:-} -o %T" ]]; then
          echo "$@" >> "$FAKE_SLURM/squeue.log"
          [[ ${FAKE_JOB_STATE:-} == FAIL ]] && { echo 'squeue: error: Unable to contact slurm controller' >&2; exit 1; }
          echo "${FAKE_JOB_STATE:-RUNNING}"
          exit 0
        fi
        # The same key queued from another sweep root is another run. -o '%i %j %o': id, name, script.
        [[ $* == '--me --all -h -o %i %j %o' ]] || exit 3
        echo "100 slmjax-s20m_d8.3e7 $FAKE_ROOT/slurm/s20m_d8.3e7.sbatch"
        echo "101 slmjax-s20m_d4.1e7 /other/root/slurm/s20m_d4.1e7.sbatch"
        """,
    "srun": """\
        #!/usr/bin/env bash
        echo "$@" >> "$FAKE_SLURM/srun.log"
        [[ $1 == --kill-on-bad-exit=1 ]] && shift
        [[ $1 == --cpus-per-task=* ]] && shift
        for t in 0 1; do
          SLURM_JOB_ID=77 SLURM_NTASKS=2 SLURM_PROCID=$t SLURM_LOCALID=0 "$@" &
        done
        wait
        """,
    "slmjax-train": """\
        #!/usr/bin/env python3
        import json, os, sys
        with open(os.path.join(os.environ["FAKE_SLURM"], "trainer.jsonl"), "a") as f:
            f.write(json.dumps({"cwd": os.getcwd(), "argv": sys.argv[1:],
                                "task": os.environ["SLURM_PROCID"]}) + "\\n")
        if os.environ.get("FAKE_STATUS") and os.environ["SLURM_PROCID"] == "0":
            wd = sys.argv[2].split("=", 1)[1]
            os.makedirs(wd, exist_ok=True)
            with open(os.path.join(wd, "run.json"), "w") as f:
                json.dump({"status": os.environ["FAKE_STATUS"]}, f)
        """,
    "scontrol": """\
        #!/usr/bin/env bash
        echo "$@" >> "$FAKE_SLURM/scontrol.log"
        """,
    "python": f"""\
        #!/usr/bin/env bash
        exec {sys.executable} "$@"
        """,
}


def sweep(*args, env=ENV):
    return subprocess.run([sys.executable, "-m", "slmjax.launch.cli", *args], cwd=REPO,
                          capture_output=True, text=True, env=env)


def test_slurm_dry_run_prints_the_exact_script_and_sbatch_command():
    proc = sweep("--config=configs/sweeps/paper_grid.py", "--root=/shared/runs/paper",
                 "--launcher=slurm", "--slurm_partition=gpu", "--account=acct", "--nodes=2",
                 "--gpus_per_node=8", "--mem=200G", "--time=2-00:00:00", "--repo_dir=/shared/slmjax",
                 "--config.data_path=/shared/units", "--only=^s823m_d8.2e10$", "--dry_run")
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.split("# ---- /shared/runs/paper/slurm/s823m_d8.2e10.sbatch\n", 1)[1]
    assert printed == GOLDEN_SCRIPT + "sbatch --parsable /shared/runs/paper/slurm/s823m_d8.2e10.sbatch\n"
    assert not os.path.exists("/shared/runs/paper")   # a dry run writes nothing


def _slurm_env(fake, **extra):
    """The environment of a sweep whose SLURM commands are the fakes in fake/bin."""
    return {**ENV, "FAKE_SLURM": str(fake), "PATH": f"{fake / 'bin'}:{os.environ['PATH']}", **extra}


def _fake_slurm(tmp_path):
    """(fake, repo): the fake SLURM commands in fake/bin, and a checkout whose .venv/bin is them."""
    fake = tmp_path / "slurm"
    (fake / "bin").mkdir(parents=True)
    for name, text in FAKES.items():
        (fake / "bin" / name).write_text(textwrap.dedent(text))
        (fake / "bin" / name).chmod(0o755)
    repo = tmp_path / "repo"
    (repo / ".venv").mkdir(parents=True)
    (repo / ".venv" / "bin").symlink_to(fake / "bin")
    return fake, repo


def test_slurm_launcher_writes_submits_and_the_script_runs(tmp_path):
    fake, repo = _fake_slurm(tmp_path)
    root = tmp_path / "runs"
    env = _slurm_env(fake, FAKE_ROOT=str(root))
    (root / "s20m_d1.7e8").mkdir(parents=True)
    (root / "s20m_d1.7e8" / "run.json").write_text(json.dumps({"status": "completed"}))
    proc = sweep("--config=configs/sweeps/paper_grid.py", f"--root={root}", "--launcher=slurm",
                 "--nodes=2", "--gpus_per_node=4", f"--repo_dir={repo}", "--config.data_path=/shared/units",
                 "--only=^s20m_d(4.1e7|8.3e7|1.7e8)$", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "s20m_d8.3e7: already queued as slmjax-s20m_d8.3e7, skipped" in out
    assert "s20m_d1.7e8: completed, skipped" in out
    script = root / "slurm" / "s20m_d4.1e7.sbatch"
    assert f"s20m_d4.1e7: submitted job 1001 ({script})" in out
    assert (fake / "submitted").read_text().split() == [str(script)]
    text = script.read_text()
    assert "#SBATCH --gpus-per-task=4\n" in text and "#SBATCH --partition" not in text
    assert not (root / "slurm" / "s20m_d4.1e7.sbatch.tmp").exists()

    # The script itself: valid bash, and srun starts one trainer per task from the repository.
    run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    calls = [json.loads(line) for line in (fake / "trainer.jsonl").read_text().splitlines()]
    assert sorted(c["task"] for c in calls) == ["0", "1"]
    assert all(c["cwd"] == str(repo) for c in calls)
    assert calls[0]["argv"][:2] == ["--config=configs/train.py:s20m", f"--workdir={root}/s20m_d4.1e7"]


def test_slurm_root_through_a_symlink_is_the_same_root(tmp_path):
    # squeue names the script as it was submitted; the same root reached through a link (or the
    # link's target, when the first sweep went through the link) must not queue the run twice.
    fake, repo = _fake_slurm(tmp_path)
    real = tmp_path / "runs"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    env = _slurm_env(fake, FAKE_ROOT=str(real))
    for root, reported in ((link, real), (real, link)):
        proc = sweep("--config=configs/sweeps/paper_grid.py", f"--root={root}", "--launcher=slurm",
                     f"--repo_dir={repo}", "--config.data_path=/shared/units",
                     "--only=^s20m_d8.3e7$", env={**env, "FAKE_ROOT": str(reported)})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "s20m_d8.3e7: already queued as slmjax-s20m_d8.3e7, skipped" in proc.stdout
    assert not (fake / "submitted").exists()


def test_slurm_job_saves_before_its_time_limit_and_queues_itself_again(tmp_path):
    # SIGTERM 300 s before the limit (the trainer saves, records `preempted`, exits 0), then the
    # job requeues itself; srun is given the task's CPUs (it no longer inherits them from sbatch).
    fake, repo = _fake_slurm(tmp_path)
    env = _slurm_env(fake)
    root = tmp_path / "runs"
    proc = sweep("--config=configs/sweeps/paper_grid.py", f"--root={root}", "--launcher=slurm",
                 "--nodes=2", "--cpus_per_task=16", f"--repo_dir={repo}",
                 "--config.data_path=/shared/units", "--only=^s20m_d4.1e7$", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    script = root / "slurm" / "s20m_d4.1e7.sbatch"
    text = script.read_text()
    assert "#SBATCH --requeue\n" in text and "#SBATCH --signal=TERM@300\n" in text
    for status, requeued in (("completed", False), ("preempted", True)):
        run = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                             env={**env, "FAKE_STATUS": status, "SLURM_JOB_ID": "77"})
        assert run.returncode == 0, run.stderr
        assert (fake / "scontrol.log").exists() == requeued
    assert (fake / "scontrol.log").read_text() == "requeue 77\n"
    assert (fake / "srun.log").read_text().startswith("--kill-on-bad-exit=1 --cpus-per-task=16 ")


TRAINER_SRUN = f"""\
#!{sys.executable}
# srun and its trainer in one: SIGTERM (SLURM sends it to every process of a preempted or cancelled
# job) -> save for a second, record `preempted` in run.json as slmjax-train does, exit 0.
import json, os, signal, sys, time
workdir = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--workdir="))
notice = []
signal.signal(signal.SIGTERM, lambda *_: notice.append(1))
open(os.path.join(os.environ["FAKE_SLURM"], "started"), "w").close()
while not notice:
    time.sleep(0.02)
time.sleep(1)
os.makedirs(workdir, exist_ok=True)
with open(os.path.join(workdir, "run.json.tmp"), "w") as f:
    json.dump({{"run_id": os.path.basename(workdir), "status": "preempted"}}, f)
os.replace(os.path.join(workdir, "run.json.tmp"), os.path.join(workdir, "run.json"))
"""


def _job_script(tmp_path, srun=None, **opts):
    """(fake, script, workdir): a run's sbatch script on disk, run with the fake SLURM commands and
    `srun` (its text) in place of the fake srun."""
    from slmjax.launch import slurm

    fake, repo = _fake_slurm(tmp_path)
    if srun is not None:
        (fake / "bin" / "srun").write_text(srun)
    root = tmp_path / "runs"
    workdir = root / "s20m_d4.1e7"
    script = tmp_path / "job.sbatch"
    script.write_text(slurm.script(_run(str(workdir)), str(root),
                                   slurm.SlurmOptions(repo_dir=str(repo), **opts)))
    return fake, script, workdir


@pytest.mark.parametrize("state,requeued,says", [
    ("RUNNING", True, None),                     # preempted with a GraceTime (or the time limit)
    ("CANCELLED", False, "slmjax: not requeued: job 77 is CANCELLED"),   # scancel, slurm_stop.sh
    ("COMPLETING", False, "slmjax: not requeued: job 77 is COMPLETING"),
    ("FAIL", False, "slmjax: not requeued: squeue failed, so the state of job 77 is unknown"),
])
def test_slurm_job_shell_waits_for_the_trainers_after_sigterm(tmp_path, state, requeued, says):
    # A preemption (and scancel) SIGTERMs every process of the job, the batch shell included: the
    # shell ended at once, the job with it, and SLURM killed the trainers KillWait later while they
    # saved. It now waits for srun, then requeues only a job squeue still says is RUNNING: a
    # cancelled run (which saved and recorded `preempted` just the same) must stay cancelled.
    fake, script, workdir = _job_script(tmp_path, TRAINER_SRUN)
    job = subprocess.Popen(["bash", str(script)], env=_slurm_env(fake, SLURM_JOB_ID="77",
                                                                  FAKE_JOB_STATE=state),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        for _ in range(1500):   # the trainer's SIGTERM handler is in place
            if (fake / "started").exists() or job.poll() is not None:
                break
            time.sleep(0.02)
        assert (fake / "started").exists(), job.communicate()
        os.killpg(job.pid, signal.SIGTERM)   # as SLURM does: the shell and the trainer
        out, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 0, (job.returncode, err)
    assert json.loads((workdir / "run.json").read_text())["status"] == "preempted"
    assert "slmjax: SIGTERM: waiting for the trainers to save and exit" in err
    assert (fake / "squeue.log").read_text() == "-h -j 77 -o %T\n"
    if requeued:
        assert (fake / "scontrol.log").read_text() == "requeue 77\n"
    else:
        assert not (fake / "scontrol.log").exists()
        assert err.strip().splitlines()[-1] == says


@pytest.mark.parametrize("srun_exit,status", [("exit 3", 3), ("kill -9 $$", 137)])
def test_slurm_job_fails_with_a_failing_srun_and_is_not_requeued(tmp_path, srun_exit, status):
    # srun now runs in the background: its exit status (3, or 128 + 9 when it is killed) still
    # fails the job, even though a trainer recorded `preempted` before the step failed.
    fake, script, workdir = _job_script(tmp_path, f"#!/usr/bin/env bash\n{srun_exit}\n")
    workdir.mkdir(parents=True)
    (workdir / "run.json").write_text(json.dumps({"status": "preempted"}))
    run = subprocess.run(["bash", str(script)], env=_slurm_env(fake, SLURM_JOB_ID="77"),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == status, run.stderr
    assert not (fake / "scontrol.log").exists() and not (fake / "squeue.log").exists()


def test_slurm_memory_per_node(tmp_path):
    from slmjax.launch import slurm
    from slmjax.launch.grid import SweepError

    for mem in ("200G", "512000", "0", "1t", "64M"):
        slurm.SlurmOptions(repo_dir="/r", mem=mem).validate()
        text = slurm.script(_run("/x/k"), "/x", slurm.SlurmOptions(repo_dir="/r", mem=mem))
        assert f"\n#SBATCH --mem={mem}\n" in text
    assert "--mem" not in slurm.script(_run("/x/k"), "/x", slurm.SlurmOptions(repo_dir="/r"))
    for mem in ("lots", "1.5G", "-1", "200 G", "200GiB", "G"):
        with pytest.raises(SweepError, match="is not a SLURM memory size"):
            slurm.SlurmOptions(repo_dir="/r", mem=mem).validate()
    proc = sweep("--config=configs/sweeps/paper_grid.py", f"--root={tmp_path}", "--launcher=slurm",
                 "--repo_dir=/r", "--mem=200 GB", "--dry_run")
    assert proc.returncode == 1 and "#SBATCH" not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        "slmjax-sweep: --mem='200 GB' is not a SLURM memory size (an integer in MB, or with a K, M, "
        "G or T suffix, e.g. 200G; 0: all of the node's memory)")


def test_slurm_rejects_bad_options(tmp_path):
    proc = sweep("--config=configs/sweeps/paper_grid.py", f"--root={tmp_path}", "--launcher=slurm",
                 "--time=two days", "--dry_run")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "slmjax-sweep: --time='two days' is not a SLURM time (MM, HH:MM:SS or D-HH:MM:SS)")
    # A negative CPU count went into the script and the dry run, for sbatch to refuse later.
    proc = sweep("--config=configs/sweeps/paper_grid.py", f"--root={tmp_path}", "--launcher=slurm",
                 "--cpus_per_task=-4", "--dry_run")
    assert proc.returncode == 1 and "#SBATCH" not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        "slmjax-sweep: --cpus_per_task must be >= 0 (0: the cluster's default), got -4")


def test_slurm_time_limit_leaves_room_for_the_signal():
    from slmjax.launch import slurm

    assert [slurm._seconds(t) for t in ("30", "10:30", "2:00:00", "1-2", "1-02:30", "2-00:00:00")] == [
        1800, 630, 7200, 93600, 95400, 172800]
    proc = sweep("--config=configs/sweeps/paper_grid.py", "--root=/tmp/x", "--launcher=slurm",
                 "--time=5", "--dry_run")
    assert proc.returncode == 1 and "--time='5': a job gets SIGTERM 300 s before" in proc.stderr


def _sbatch_options(text):
    """The arguments sbatch reads from a script's #SBATCH lines, parsed as sbatch does: whitespace
    separates, quotes group, a backslash takes the next character as is, an unquoted # ends the line."""
    args = []
    for line in text.splitlines()[1:]:
        if not line.startswith("#SBATCH"):
            if line.strip() and not line.lstrip().startswith("#"):
                break   # the first command ends the directives
            continue
        cur, quote, escaped, started = "", "", False, False
        for ch in line[len("#SBATCH"):]:
            if escaped or (quote and ch != quote and ch != "\\"):
                cur, escaped, started = cur + ch, False, True
            elif ch == "\\":
                escaped = started = True
            elif quote:
                quote = ""
            elif ch in "\"'":
                quote, started = ch, True
            elif ch == "#":
                break
            elif ch.isspace():
                if started:
                    args.append(cur)
                cur, started = "", False
            else:
                cur, started = cur + ch, True
        assert not quote, f"unmatched quote in {line!r}"
        if started:
            args.append(cur)
    return args


def _expand_filename(pattern, job_id):
    """SLURM's filename pattern: %% is %, %j the job id; any backslash turns replacement off."""
    if "\\" in pattern:
        return pattern.replace("\\", "")
    return re.sub(r"%([%j])", lambda m: "%" if m.group(1) == "%" else job_id, pattern)


def _run(workdir, key="s20m_d4.1e7"):
    from slmjax.launch.grid import Run

    return Run(key=key, size="s20m", n_params=1, tokens=1, batch_size=1, seq_len=1, steps=1,
               warmup=0, unique_tokens=None, restricted=False, workdir=workdir, overrides=(),
               train_config="configs/train.py:s20m")


def test_slurm_output_path_with_spaces_quotes_and_percent_reaches_sbatch_intact(tmp_path):
    from slmjax.launch import slurm

    root = str(tmp_path / "my runs #1 at 50%j \"q\" 'a'")
    text = slurm.script(_run(root + "/s20m_d4.1e7"), root, slurm.SlurmOptions(repo_dir="/r"))
    outputs = [a.split("=", 1)[1] for a in _sbatch_options(text) if a.startswith("--output=")]
    assert [_expand_filename(o, "4242") for o in outputs] == [f"{root}/slurm/s20m_d4.1e7-4242.out"]
    assert "--open-mode=append" in _sbatch_options(text)   # the lines after it still parse


def test_slurm_refuses_a_root_sbatch_cannot_take():
    # A backslash turns off SLURM's %j replacement; a newline would end the #SBATCH line.
    from slmjax.launch import slurm
    from slmjax.launch.grid import SweepError

    for root in ("/shared/a\\b", "/shared/a\nb"):
        with pytest.raises(SweepError, match="--root"):
            slurm.script(_run(root + "/k"), root, slurm.SlurmOptions(repo_dir="/r"))


def test_slurm_dry_run_skips_the_runs_a_launch_skips(tmp_path):
    # The fake squeue lists s20m_d8.3e7 queued from this root (and s20m_d4.1e7 from another root):
    # a launch submits only s20m_d4.1e7, so the dry run must print only its script and sbatch call.
    fake, repo = _fake_slurm(tmp_path)
    root = tmp_path / "runs"
    env = _slurm_env(fake, FAKE_ROOT=str(root))
    args = ["--config=configs/sweeps/paper_grid.py", f"--root={root}", "--launcher=slurm",
            f"--repo_dir={repo}", "--config.data_path=/shared/units", "--only=^s20m_d(4.1e7|8.3e7)$"]
    dry = sweep(*args, "--dry_run", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "s20m_d8.3e7: already queued as slmjax-s20m_d8.3e7, skipped" in dry.stdout
    assert [ln for ln in dry.stdout.splitlines() if ln.startswith("sbatch ")] == [
        f"sbatch --parsable {root}/slurm/s20m_d4.1e7.sbatch"]
    assert not root.exists()   # a dry run writes nothing
    real = sweep(*args, env=env)
    assert real.returncode == 0, real.stdout + real.stderr
    assert (fake / "submitted").read_text().split() == [f"{root}/slurm/s20m_d4.1e7.sbatch"]


def test_slurm_dry_run_off_the_cluster_says_it_cannot_see_the_queue():
    proc = sweep("--config=configs/sweeps/paper_grid.py", "--root=/shared/runs/paper",
                 "--launcher=slurm", "--repo_dir=/shared/slmjax", "--config.data_path=/shared/units",
                 "--only=^s20m_d4.1e7$", "--dry_run",
                 env={**ENV, "PATH": os.path.dirname(sys.executable)})
    assert proc.returncode == 0, proc.stderr
    assert ("# note: squeue is not on PATH: run this on a SLURM login node; runs already queued "
            "are not skipped in this dry run") in proc.stdout.splitlines()
    # Without --dry_run the same cause is said, not the root's directory that cannot be made here.
    proc = sweep("--config=configs/sweeps/paper_grid.py", "--root=/proc/shared/runs/paper",
                 "--launcher=slurm", "--repo_dir=/shared/slmjax", "--config.data_path=/shared/units",
                 "--only=^s20m_d4.1e7$", env={**ENV, "PATH": os.path.dirname(sys.executable)})
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        "slmjax-sweep: squeue is not on PATH: run this on a SLURM login node")


def test_slurm_paths_given_with_a_tilde_reach_the_job_expanded(tmp_path):
    # `--repo_dir=~/repo` reaches slmjax-sweep as is (no shell expands a ~ after '='); the job
    # script quotes it, so it ran `cd '~/repo'` and the job failed at its start. Same for --root:
    # the runs went to ./~/runs.
    fake, repo = _fake_slurm(tmp_path)
    env = _slurm_env(fake, HOME=str(tmp_path))
    cwd = tmp_path / "elsewhere"   # where ./~/runs would have gone
    cwd.mkdir()
    proc = subprocess.run([sys.executable, "-m", "slmjax.launch.cli",
                           f"--config={REPO}/configs/sweeps/paper_grid.py", "--root=~/runs",
                           "--launcher=slurm", "--repo_dir=~/repo", "--venv=~/repo/.venv",
                           "--config.data_path=/shared/units", "--only=^s20m_d4.1e7$"],
                          cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    script = tmp_path / "runs" / "slurm" / "s20m_d4.1e7.sbatch"
    assert (fake / "submitted").read_text().split() == [str(script)]
    run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    calls = [json.loads(line) for line in (fake / "trainer.jsonl").read_text().splitlines()]
    assert len(calls) == 2 and all(c["cwd"] == str(repo) for c in calls)
    assert calls[0]["argv"][1] == f"--workdir={tmp_path}/runs/s20m_d4.1e7"


def test_slurm_refuses_runs_whose_batch_the_jobs_gpus_cannot_shard():
    # Each job's JAX devices are --nodes x --gpus_per_node, and slmjax-train splits every update's
    # batch over all of them (mesh.fsdp = -1). PAPER.md's batches over 16 GPUs: 64, 128, 256 and 608
    # divide by 16; 252 (309M: 8 runs), 456 (823M at D/N 2..32: 6 runs) and 494 (823M at D/N 64)
    # do not: 15 jobs that would each wait in the queue and then fail at their start.
    base = ["--config=configs/sweeps/paper_grid.py", "--root=/shared/runs/paper", "--launcher=slurm",
            "--repo_dir=/shared/slmjax", "--config.data_path=/shared/units", "--dry_run"]
    proc = sweep(*base, "--nodes=2", "--gpus_per_node=8")
    assert proc.returncode == 1 and "sbatch" not in proc.stdout   # no script, nothing submitted
    assert proc.stderr.strip().splitlines() == [
        "slmjax-sweep: s309m_d6.2e8: train.batch_size=252 / train.micro_batches=1 is not divisible "
        "by the 16 batch shards (mesh.data * mesh.fsdp), on --nodes=2 x --gpus_per_node=8 GPUs "
        "(and 14 more): give that size a mesh that fits (e.g. mesh.tensor in its "
        "sizes.NAME.overrides) or leave its runs out with --only"]
    # On 8 GPUs 456 and 608 divide too: 252 (8 runs) and 494 (1) remain.
    proc = sweep(*base, "--nodes=1", "--gpus_per_node=8")
    assert proc.returncode == 1 and "(and 8 more)" in proc.stderr, proc.stderr
    # The runs that fit are planned as before; on 4 GPUs 252 divides, 494 still does not.
    proc = sweep(*base, "--nodes=2", "--gpus_per_node=8", "--only=^s(20|85|155)m_|^s823m_d8.2e10$")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("sbatch --parsable ") == 3 * (8 + 4) + 1   # 8 ratios + 4 epochs each
    proc = sweep(*base, "--nodes=1", "--gpus_per_node=4", "--only=^s309m_|^s823m_d5.3e10$")
    assert proc.returncode == 1 and "s823m_d5.3e10: train.batch_size=494 " in proc.stderr
    assert "more)" not in proc.stderr


def test_slurm_device_check_leaves_out_runs_it_will_not_submit(tmp_path):
    # The 309M runs completed earlier (e.g. on 4-GPU nodes): on 8 GPUs they would not fit, but they
    # are skipped, so the other runs go ahead; the 494-sequence run (494 = 2 x 13 x 19) does not.
    root = tmp_path / "runs"
    n309 = 308_845_568
    for r in (2, 4, 8, 10, 20, 32, 64, 100):
        wd = root / f"s309m_d{r * n309:.1e}".replace("e+0", "e").replace("e+", "e")
        wd.mkdir(parents=True)
        (wd / "run.json").write_text(json.dumps({"status": "completed"}))
    base = ["--config=configs/sweeps/paper_grid.py", f"--root={root}", "--launcher=slurm",
            "--repo_dir=/shared/slmjax", "--config.data_path=/shared/units", "--dry_run",
            "--nodes=1", "--gpus_per_node=8"]
    proc = sweep(*base, "--only=^s309m_|^s823m_d(1.6e9|8.2e10)$")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("completed, skipped") == 8 and proc.stdout.count("sbatch --parsable") == 2
    proc = sweep(*base, "--only=^s309m_|^s823m_d5.3e10$")
    assert proc.returncode == 1 and "s823m_d5.3e10: train.batch_size=494 " in proc.stderr


def test_slurm_squeue_failure_is_one_plain_line(tmp_path):
    # squeue fails when the controller does not answer: its first stderr line, not a Python list.
    fake, repo = _fake_slurm(tmp_path)
    (fake / "bin" / "squeue").write_text(
        "#!/usr/bin/env bash\necho 'squeue: error: Unable to contact slurm controller' >&2\n"
        "echo 'second line' >&2\nexit 1\n")
    env = _slurm_env(fake)
    args = ["--config=configs/sweeps/paper_grid.py", f"--root={tmp_path / 'runs'}", "--launcher=slurm",
            f"--repo_dir={repo}", "--config.data_path=/shared/units", "--only=^s20m_d4.1e7$"]
    proc = sweep(*args, env=env)
    assert proc.returncode == 1 and not (fake / "submitted").exists()
    assert proc.stderr.strip().splitlines()[-1] == (
        "slmjax-sweep: squeue failed: squeue: error: Unable to contact slurm controller")
    (fake / "bin" / "squeue").write_text("#!/usr/bin/env bash\nexit 1\n")
    proc = sweep(*args, env=env)
    assert proc.stderr.strip().splitlines()[-1] == "slmjax-sweep: squeue failed: exit code 1"


def test_slurm_two_sweeps_submitting_at_once_do_not_submit_a_run_twice(tmp_path):
    # Each saw the queue before the other's jobs were in it, and both submitted every run. While one
    # sweep submits (here: holds the root's submit lock), another is refused before it asks squeue.
    from slmjax import fileio

    fake, repo = _fake_slurm(tmp_path)
    root = tmp_path / "runs"
    env = _slurm_env(fake, FAKE_ROOT=str(root))
    args = ["--config=configs/sweeps/paper_grid.py", f"--root={root}", "--launcher=slurm",
            f"--repo_dir={repo}", "--config.data_path=/shared/units", "--only=^s20m_d4.1e7$"]
    (root / "slurm").mkdir(parents=True)
    lock = fileio.PidLock(str(root / "slurm" / ".submit.lock"))
    try:
        proc = sweep(*args, env=env)
        assert proc.returncode == 1 and not (fake / "submitted").exists(), proc.stdout + proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            f"slmjax-sweep: another sweep (pid {os.getpid()}) is submitting the runs of {root}; "
            "wait for it to finish")
        assert sweep(*args, "--dry_run", env=env).returncode == 0   # a dry run submits nothing
    finally:
        lock.release()
    proc = sweep(*args, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (fake / "submitted").read_text().split() == [f"{root}/slurm/s20m_d4.1e7.sbatch"]


def test_slurm_sees_its_jobs_in_hidden_partitions(tmp_path):
    # squeue leaves out the jobs of a hidden partition (Hidden=YES, e.g. a preemptible one) unless
    # given --all: a sweep submitted there saw none of its jobs and submitted each run again.
    fake, repo = _fake_slurm(tmp_path)
    root = tmp_path / "runs"
    (fake / "bin" / "squeue").write_text(
        "#!/usr/bin/env bash\n"
        "[[ $* == *--all* || $* == *' -a '* ]] && "
        f"echo '100 slmjax-s20m_d4.1e7 {root}/slurm/s20m_d4.1e7.sbatch'\nexit 0\n")
    env = _slurm_env(fake)
    proc = sweep("--config=configs/sweeps/paper_grid.py", f"--root={root}", "--launcher=slurm",
                 f"--repo_dir={repo}", "--config.data_path=/shared/units", "--only=^s20m_d4.1e7$",
                 "--slurm_partition=preempt", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "s20m_d4.1e7: already queued as slmjax-s20m_d4.1e7, skipped" in proc.stdout
    assert not (fake / "submitted").exists()
    (fake / "bin" / "scancel").write_text(f"#!/usr/bin/env bash\necho \"$@\" > {fake}/cancelled\n")
    (fake / "bin" / "scancel").chmod(0o755)
    stop = subprocess.run(["bash", f"{REPO}/launch/slurm_stop.sh", str(root)], env=env,
                          capture_output=True, text=True)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert (fake / "cancelled").read_text().split() == ["100"]
