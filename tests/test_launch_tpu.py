"""TPU pod launcher: the exact gcloud commands (golden strings), and that they run.

A stand-in `gcloud` on PATH plays a 2-worker slice: `tpu-vm describe` prints its accelerator type
($FAKE_TYPE, default v4-32; $FAKE_DESCRIBE_ERROR: fails with that message), `tpu-vm ssh` runs the
--command with bash once per worker (or on the one --worker=K), each worker a home directory
holding slmjax/.venv/bin/slmjax-train (a stand-in trainer that records its arguments and pid, and
ends the run `completed`, or $FAKE_STATUS). Paths under /gcs/ in a command are the workers' bucket,
$FAKE_TPU/gcs/, which the launching machine does not see. launch/tpu_stop.sh goes through the
same stand-in.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO}

GOLDEN = [
    "gcloud compute tpus tpu-vm ssh v4-32 --zone=us-central2-b --project=proj --worker=all "
    "'--command=cd ~/slmjax && echo $$ > ~/slmjax-train.pid && exec .venv/bin/slmjax-train "
    "--config=configs/train.py:s20m --workdir=/mnt/gcs/paper/s20m_d4.1e7 --config.data.kind=units "
    "--config.data.path=/mnt/gcs/units --config.data.seq_len=2050 --config.train.batch_size=64 "
    "--config.train.tokens=41421824 --config.train.steps=316'",
    "gcloud compute tpus tpu-vm ssh v4-32 --zone=us-central2-b --project=proj --worker=all "
    "'--command=cd ~/slmjax && echo $$ > ~/slmjax-train.pid && exec .venv/bin/slmjax-train "
    "--config=configs/train.py:s823m --workdir=/mnt/gcs/paper/s823m_d8.2e10 "
    "--config.data.kind=units --config.data.path=/mnt/gcs/units --config.data.seq_len=2050 "
    "--config.train.batch_size=608 --config.train.tokens=82317926400 --config.train.steps=66045'",
]

FAKE_GCLOUD = textwrap.dedent("""\
    #!/usr/bin/env bash
    # gcloud compute tpus tpu-vm ssh NAME ... --worker=all --command=CMD, on local "workers".
    printf '%s\\n' "$*" >> "$FAKE_TPU/gcloud.log"
    if [[ $4 == describe ]]; then
      if [[ -n ${FAKE_DESCRIBE_ERROR:-} ]]; then printf '%s\\n' "$FAKE_DESCRIBE_ERROR" >&2; exit 1; fi
      printf '%s\\n' "${FAKE_TYPE-v4-32}"; exit 0
    fi
    if [[ -n ${FAKE_NOISE:-} ]]; then printf '%s\\n' "$FAKE_NOISE"; fi  # what ssh may print first
    cmd= worker=all
    for a in "$@"; do case $a in --command=*) cmd=${a#--command=} ;; --worker=*) worker=${a#--worker=} ;; esac; done
    cmd=${cmd//\/gcs\//$FAKE_TPU/gcs/}
    if [[ $worker != all ]]; then
      # $FAKE_UNREACHABLE: once a session dropped, worker 0 answers no ssh either
      if [[ -n ${FAKE_UNREACHABLE:-} && -e $FAKE_TPU/dropped ]]; then echo "ssh: connect to host: timed out" >&2; exit 255; fi
      HOME=$FAKE_TPU/worker$worker exec bash -c "$cmd"
    fi
    pids=()
    for w in "$FAKE_TPU"/worker*; do HOME=$w bash -c "$cmd" > "$w/out.log" 2>&1 & pids+=($!); done
    if [[ -n ${FAKE_DROP:-} ]]; then sleep 1; touch "$FAKE_TPU/dropped"; exit 255; fi   # the ssh session drops, the trainers go on
    rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    exit $rc
    """)

FAKE_PYTHON = textwrap.dedent(f"""\
    #!/usr/bin/env bash
    exec {sys.executable} "$@"
    """)

FAKE_TRAINER = textwrap.dedent("""\
    #!/usr/bin/env python3
    import json, os, sys, time
    args = dict(a.split("=", 1) for a in sys.argv[1:])
    wd = args["--workdir"]
    with open(os.path.expanduser("~/trainer.json"), "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "argv": sys.argv[1:]}) + "\\n")
    if os.environ.get("FAKE_SLEEP"):
        time.sleep(float(os.environ["FAKE_SLEEP"]))
    os.makedirs(wd, exist_ok=True)
    with open(os.path.join(wd, "run.json"), "w") as f:
        json.dump({"status": os.environ.get("FAKE_STATUS", "completed")}, f)
    """)


def _slice(tmp_path, workers=2):
    fake = tmp_path / "tpu"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "gcloud").write_text(FAKE_GCLOUD)
    (fake / "bin" / "gcloud").chmod(0o755)
    for w in range(workers):
        venv_bin = fake / f"worker{w}" / "slmjax" / ".venv" / "bin"
        venv_bin.mkdir(parents=True)
        (venv_bin / "slmjax-train").write_text(FAKE_TRAINER)
        (venv_bin / "slmjax-train").chmod(0o755)
        (venv_bin / "python").write_text(FAKE_PYTHON)
        (venv_bin / "python").chmod(0o755)
    env = {**ENV, "FAKE_TPU": str(fake), "PATH": f"{fake / 'bin'}:{os.environ['PATH']}"}
    return fake, env


def sweep(*args, env=ENV):
    return subprocess.run([sys.executable, "-m", "slmjax.launch.cli", *args], cwd=REPO,
                          capture_output=True, text=True, env=env)


def test_tpu_dry_run_prints_the_exact_gcloud_commands():
    proc = sweep("--config=configs/sweeps/paper_grid.py", "--root=/mnt/gcs/paper", "--launcher=tpu",
                 "--tpu_name=v4-32", "--zone=us-central2-b", "--project=proj",
                 "--config.data_path=/mnt/gcs/units", "--only=^s20m_d4.1e7$|^s823m_d8.2e10$",
                 "--dry_run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == GOLDEN


def test_bucket_urls_are_refused_with_the_mount_to_use_instead():
    # The trainer writes through the filesystem: a gs:// root or dataset would fail in every run.
    for args in (["--root=gs://bkt/paper", "--config.data_path=/mnt/gcs/units"],
                 ["--root=/mnt/gcs/paper", "--config.data_path=gs://bkt/units"]):
        proc = sweep("--config=configs/sweeps/paper_grid.py", "--launcher=tpu", "--tpu_name=v4-32",
                     "--zone=us-central2-b", *args, "--dry_run")
        assert proc.returncode != 0
        line = proc.stderr.strip().splitlines()[-1]
        assert "is a URL, not a path" in line and "/mnt/gcs" in line, proc.stderr
        assert "Traceback" not in proc.stderr


def test_tpu_launcher_runs_each_run_on_every_worker_and_skips_completed(tmp_path):
    fake, env = _slice(tmp_path)
    root = tmp_path / "runs"
    args = ["--config=configs/sweeps/paper_grid.py", f"--root={root}", "--launcher=tpu",
            "--tpu_name=v4-32", "--zone=us-central2-b", "--config.data_path=/mnt/gcs/units",
            "--only=^s20m_d(4.1e7|8.3e7)$"]
    proc = sweep(*args, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [c for c in (fake / "gcloud.log").read_text().splitlines() if "--worker=all" in c]
    assert len(calls) == 2
    assert calls[0].startswith("compute tpus tpu-vm ssh v4-32 --zone=us-central2-b --worker=all "
                               "--command=cd ~/slmjax && echo $$ > ~/slmjax-train.pid && exec ")
    for w in ("worker0", "worker1"):
        started = [json.loads(line) for line in (fake / w / "trainer.json").read_text().splitlines()]
        assert [s["argv"][1] for s in started] == [f"--workdir={root}/s20m_d4.1e7",
                                                   f"--workdir={root}/s20m_d8.3e7"]
        assert all(s["cwd"] == str(fake / w / "slmjax") for s in started)
        assert started[0]["argv"][0] == "--config=configs/train.py:s20m"
        # exec keeps the shell's pid: the pid file names the trainer itself.
        assert int((fake / w / "slmjax-train.pid").read_text()) == started[-1]["pid"]
    # Launched again: both runs are completed, nothing is started.
    proc = sweep(*args, env=env)
    assert proc.returncode == 0 and proc.stdout.count("completed, skipped") == 2
    assert sum("--worker=all" in c for c in (fake / "gcloud.log").read_text().splitlines()) == 2


def test_tpu_run_status_is_read_on_the_workers(tmp_path):
    # The root lives on the workers' bucket only. A run the trainer leaves `preempted` (SIGTERM:
    # it saves and exits 0) is not done: the sweep stops there and says so; launched again it
    # resumes that run and skips the completed one, which it can only know by asking a worker.
    fake, env = _slice(tmp_path)
    args = ["--config=configs/sweeps/paper_grid.py", "--root=/gcs/paper", "--launcher=tpu",
            "--tpu_name=v4-32", "--zone=us-central2-b", "--config.data_path=/gcs/units",
            "--only=^s20m_d(4.1e7|8.3e7)$"]
    started = lambda: [json.loads(ln)["argv"][1].rsplit("/gcs/", 1)[1] for ln in  # noqa: E731
                       (fake / "worker0" / "trainer.json").read_text().splitlines()]
    proc = sweep(*args, env={**env, "FAKE_STATUS": "preempted"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "s20m_d4.1e7: failed (exit code 0 but run.json status is 'preempted')" in proc.stdout
    assert started() == ["paper/s20m_d4.1e7"]
    proc = sweep(*args, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert started()[1:] == ["paper/s20m_d4.1e7", "paper/s20m_d8.3e7"]
    proc = sweep(*args, env=env)
    assert proc.returncode == 0 and proc.stdout.count("completed, skipped") == 2, proc.stdout
    assert len(started()) == 3
    # The statuses come from slmjax.launch.status in the workers' venv, all runs in one call.
    first = [c for c in (fake / "gcloud.log").read_text().splitlines() if "--worker=0" in c][0]
    assert first.endswith("--command=cd ~/slmjax && exec .venv/bin/python -m slmjax.launch.status "
                          "'--trainer_pidfile=~/slmjax-train.pid' --configs "
                          "/gcs/paper/s20m_d4.1e7 /gcs/paper/s20m_d8.3e7")


def test_tpu_statuses_of_every_kind_survive_extra_ssh_output(tmp_path, monkeypatch):
    from slmjax.launch import tpu
    from slmjax.launch.grid import Run

    fake, env = _slice(tmp_path)
    written = {"a": "completed", "b": "preempted", "c": "failed"}
    for name, st in written.items():
        (fake / "gcs" / "root" / name).mkdir(parents=True)
        (fake / "gcs" / "root" / name / "run.json").write_text(json.dumps({"status": st}))
    (fake / "gcs" / "root" / "e").mkdir()
    (fake / "gcs" / "root" / "e" / "run.json").write_text('{"status": "comp')   # half written
    (fake / "gcs" / "root" / "a" / "config.json").write_text(json.dumps({"train": {"lr": 0.1}}))
    (fake / "gcs" / "root" / "b" / "config.json").write_text(json.dumps({"train": {"lr": 0.1}}))
    runs = [Run(key=k, size="s", n_params=1, tokens=1, batch_size=1, seq_len=1, steps=1, warmup=0,
                unique_tokens=None, restricted=False, workdir=f"/gcs/root/{k}", overrides=(),
                train_config="configs/train.py:s") for k in "abcde"]
    opts = tpu.TpuOptions(name="v4-32", zone="z")
    noise = "slmjax-status is not a status line\r\nWarning: Permanently added 'tpu' to known hosts."
    for name, value in {**env, "FAKE_NOISE": noise}.items():
        monkeypatch.setenv(name, value)
    # with the recorded config of the completed run only (the launcher compares it with its own)
    assert tpu.remote_state(runs, opts) == (["completed", "preempted", "failed", None, None], None,
                                            [{"config": {"train": {"lr": 0.1}}, "compute_dtype": None},
                                             None, None, None, None])


def test_a_tpu_launch_does_not_skip_a_completed_run_of_another_config(tmp_path):
    # The root is on the workers' bucket: the run there completed with another learning rate (a
    # sweep changed and launched into the same root). It was skipped as this sweep's run; the
    # launch now reads its config.json on worker 0 and refuses, naming the field.
    fake, env = _slice(tmp_path)
    args = ["--config=configs/sweeps/paper_grid.py", "--root=/gcs/paper", "--launcher=tpu",
            "--tpu_name=v4-32", "--zone=us-central2-b", "--config.data_path=/gcs/units",
            "--only=^s20m_d4.1e7$"]
    wd = fake / "gcs" / "paper" / "s20m_d4.1e7"
    wd.mkdir(parents=True)
    (wd / "run.json").write_text(json.dumps({"status": "completed"}))
    proc = sweep(*args, env=env)                     # no config.json: the trainer's check decides
    assert proc.returncode == 0 and "completed, skipped" in proc.stdout, proc.stdout + proc.stderr
    # the run's own config, as its trainer wrote it: skipped; with another lr: refused
    import importlib.util

    from slmjax.launch import grid
    from slmjax.train.run_files import config_dict
    spec = importlib.util.spec_from_file_location("paper_grid", f"{REPO}/configs/sweeps/paper_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config()
    cfg.data_path = "/gcs/units"
    (run,) = [r for r in grid.expand(cfg, "/gcs/paper", REPO) if r.key == "s20m_d4.1e7"]
    recorded = config_dict(run.config)
    (wd / "config.json").write_text(json.dumps(recorded))
    proc = sweep(*args, env=env)
    assert proc.returncode == 0 and "completed, skipped" in proc.stdout, proc.stdout + proc.stderr
    recorded["train"]["lr"] = 0.1
    (wd / "config.json").write_text(json.dumps(recorded))
    proc = sweep(*args, env=env)
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert line == ("slmjax-sweep: s20m_d4.1e7: /gcs/paper/s20m_d4.1e7 holds a completed run with "
                    "another config (train.lr: 0.1 in the workdir vs 0.0005 now): it is not this "
                    "sweep's run; use a new --root, or move that workdir aside"), proc.stderr
    assert not (fake / "worker0" / "trainer.json").exists()


def test_tpu_stop_script_stops_the_trainer_on_every_worker(tmp_path):
    fake, env = _slice(tmp_path)
    root = tmp_path / "runs"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "slmjax.launch.cli", "--config=configs/sweeps/paper_grid.py",
         f"--root={root}", "--launcher=tpu", "--tpu_name=v4-32", "--zone=us-central2-b",
         "--config.data_path=/mnt/gcs/units", "--only=^s20m_d4.1e7$"], cwd=REPO, env={**env, "FAKE_SLEEP": "60"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pidfiles = [fake / w / "slmjax-train.pid" for w in ("worker0", "worker1")]
        t0 = time.time()
        while not all(p.exists() and (p.parent / "trainer.json").exists() for p in pidfiles):
            assert time.time() - t0 < 60 and launcher.poll() is None
            time.sleep(0.05)
        stop = subprocess.run(["bash", f"{REPO}/launch/tpu_stop.sh", "v4-32", "us-central2-b"],
                              env={**env, "SLMJAX_STOP_GRACE": "10"}, capture_output=True, text=True)
        assert stop.returncode == 0, stop.stderr
        for w in ("worker0", "worker1"):
            assert "stopped" in (fake / w / "out.log").read_text()
            assert not (fake / w / "slmjax-train.pid").exists()
        out = launcher.communicate(timeout=30)[0]
        assert launcher.returncode == 1 and "s20m_d4.1e7: failed" in out
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()


def test_tpu_stop_grace_defaults_to_ten_minutes_and_must_be_seconds(tmp_path):
    # An 823M run saves ~10 GB (parameters and AdamW moments) through gcsfuse after its current
    # step: a minute can cut it short, and SIGKILL then loses the work since the last checkpoint.
    fake, env = _slice(tmp_path)
    stop = lambda grace=None: subprocess.run(  # noqa: E731
        ["bash", f"{REPO}/launch/tpu_stop.sh", "v4-32", "us-central2-b"], capture_output=True,
        text=True, env={**env, **({"SLMJAX_STOP_GRACE": grace} if grace is not None else {})})
    proc = stop()
    assert proc.returncode == 0, proc.stderr
    assert "SIGKILL after 600 s" in proc.stdout
    assert "seq 600" in (fake / "gcloud.log").read_text()
    assert "SIGKILL after 5 s" in stop("5").stdout
    calls = (fake / "gcloud.log").read_text()
    for bad in ("ten", "1; touch ~/x", "-1", "0"):
        proc = stop(bad)
        assert proc.returncode == 2 and "SLMJAX_STOP_GRACE" in proc.stderr, bad
    assert (fake / "gcloud.log").read_text() == calls   # nothing ran on the workers


def test_tpu_stop_leaves_alone_a_process_that_took_a_finished_trainers_pid(tmp_path):
    # The pid file outlives a trainer that ended by itself; its pid may since name another process.
    fake, env = _slice(tmp_path, workers=1)
    other = subprocess.Popen(["sleep", "60"])
    try:
        (fake / "worker0" / "slmjax-train.pid").write_text(f"{other.pid}\n")
        proc = subprocess.run(["bash", f"{REPO}/launch/tpu_stop.sh", "v4-32", "us-central2-b"],
                              env={**env, "SLMJAX_STOP_GRACE": "2"}, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert other.poll() is None, "tpu_stop.sh signalled a process that is not the trainer"
        assert "already stopped" in (fake / "worker0" / "out.log").read_text()
        assert not (fake / "worker0" / "slmjax-train.pid").exists()
    finally:
        other.kill()
        other.wait()


def _tpu_sweep_args(root, only="^s20m_d(4.1e7|8.3e7)$"):
    return ["--config=configs/sweeps/paper_grid.py", f"--root={root}", "--launcher=tpu",
            "--tpu_name=v4-32", "--zone=us-central2-b", "--config.data_path=/mnt/gcs/units",
            f"--only={only}"]


def _run_trainer_on(worker_home, seconds=60):
    """A process named like the trainer, recorded in the worker's pid file."""
    proc = subprocess.Popen([str(worker_home / "slmjax" / ".venv" / "bin" / "slmjax-train"),
                             f"--workdir={worker_home}/elsewhere"],
                            env={**ENV, "HOME": str(worker_home), "FAKE_SLEEP": str(seconds)})
    (worker_home / "slmjax-train.pid").write_text(f"{proc.pid}\n")
    return proc


def test_tpu_sweep_refuses_a_slice_whose_trainer_still_runs(tmp_path):
    # A second trainer on the same chips fails to start (or both fight over the workdir): the
    # sweep names the running one and how to stop it, and starts nothing.
    fake, env = _slice(tmp_path)
    other = _run_trainer_on(fake / "worker0")
    try:
        proc = sweep(*_tpu_sweep_args(tmp_path / "runs"), env=env)
        assert proc.returncode != 0
        line = proc.stderr.strip().splitlines()[-1]
        assert f"a trainer (pid {other.pid}) is still running on worker 0 of v4-32" in line, proc.stderr
        assert "launch/tpu_stop.sh v4-32 us-central2-b" in line and "Traceback" not in proc.stderr
        assert not any("--worker=all" in c for c in (fake / "gcloud.log").read_text().splitlines())
    finally:
        other.kill()
        other.wait()
    # Once it has exited, its stale pid file is no obstacle.
    proc = sweep(*_tpu_sweep_args(tmp_path / "runs"), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("unreachable", [False, True], ids=["trainer_seen", "worker0_silent"])
def test_tpu_sweep_stops_when_the_ssh_session_drops_but_the_trainer_goes_on(tmp_path, unreachable):
    # Even with --keep_going, starting the next run beside the still-running one would collide;
    # so it would when worker 0 does not answer after the drop (the trainer may be running).
    fake, env = _slice(tmp_path)
    proc = sweep(*_tpu_sweep_args(tmp_path / "runs"), "--keep_going",
                 env={**env, "FAKE_DROP": "1", "FAKE_SLEEP": "30",
                      **({"FAKE_UNREACHABLE": "1"} if unreachable else {})})
    try:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "s20m_d4.1e7: failed (exit code 255)" in proc.stdout
        if unreachable:
            assert ("could not read the runs' status on worker 0 of v4-32: ssh: connect to host: "
                    "timed out, so a trainer may still be running there; the sweep stops") in proc.stdout
        else:
            assert "is still running on worker 0 of v4-32" in proc.stdout
        started = (fake / "worker0" / "trainer.json").read_text().splitlines()
        assert len(started) == 1, "the next run was started beside the running one"
    finally:
        for w in ("worker0", "worker1"):
            pid = int((fake / w / "slmjax-train.pid").read_text())
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def test_tpu_dry_run_says_when_it_cannot_see_what_a_launch_skips(tmp_path):
    # The root is on the workers' bucket only and both runs are completed there: a launch starts
    # nothing, but a dry run here cannot read those statuses. It must say so instead of listing
    # the commands as if they would run.
    fake, env = _slice(tmp_path)
    args = ["--config=configs/sweeps/paper_grid.py", "--root=/gcs/paper", "--launcher=tpu",
            "--tpu_name=v4-32", "--zone=us-central2-b", "--config.data_path=/gcs/units",
            "--only=^s20m_d(4.1e7|8.3e7)$"]
    for key in ("s20m_d4.1e7", "s20m_d8.3e7"):
        (fake / "gcs" / "paper" / key).mkdir(parents=True)
        (fake / "gcs" / "paper" / key / "run.json").write_text(json.dumps({"status": "completed"}))
    real = sweep(*args, env=env)
    assert real.returncode == 0 and real.stdout.count("completed, skipped") == 2, real.stdout
    dry = sweep(*args, "--dry_run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert ("# note: /gcs/paper is not visible on this machine: a launch reads the runs' status on "
            "worker 0 of v4-32 and skips those completed there; this dry run lists every run"
            ) in dry.stdout.splitlines()
    # A root this machine sees (the statuses a launch reads are the same files): no note.
    local = tmp_path / "runs"
    (local / "s20m_d4.1e7").mkdir(parents=True)
    (local / "s20m_d4.1e7" / "run.json").write_text(json.dumps({"status": "completed"}))
    dry = sweep(*[f"--root={local}" if a.startswith("--root=") else a for a in args], "--dry_run",
                "--tpu_type=v4-32", env=env)
    assert dry.returncode == 0 and "# note:" not in dry.stdout, dry.stdout
    assert "# s20m_d4.1e7: completed, skipped" in dry.stdout


def test_tpu_types_count_jax_devices_as_the_cloud_tpu_docs_do():
    # Cloud TPU system architecture pages: v2/v3 name TensorCores, each one JAX device; v4 and v5p
    # name TensorCores, two per chip, which megacore joins into one device (v5p-8: 4 chips,
    # v5p-128: 64 chips; v4-32: 16 chips, 4 workers x 4); v5e (v5litepod-N) and v6e name chips of
    # one TensorCore each.
    from slmjax.launch import tpu
    from slmjax.launch.grid import SweepError

    expected = {"v2-8": 8, "v3-8": 8, "v3-32": 32, "v4-8": 4, "v4-32": 16, "v4-128": 64,
                "v5p-8": 4, "v5p-128": 64, "v5litepod-1": 1, "v5litepod-16": 16, "v5e-256": 256,
                "v6e-8": 8, "v6e-256": 256}
    assert {t: tpu.jax_devices(t) for t in expected} == expected
    for bad in ("v4-31", "v5p-7", "v7x-8", "v4", "v4-0", "tpu-v4-32", "V4-32", "v4-32 ", ""):
        try:
            tpu.jax_devices(bad)
        except SweepError as e:
            assert len(str(e).splitlines()) == 1 and repr(bad) in str(e), str(e)
        else:
            raise AssertionError(f"{bad!r} was taken for a TPU type")


_PAPER_TPU = ["--config=configs/sweeps/paper_grid.py", "--root=/mnt/gcs/paper", "--launcher=tpu",
              "--tpu_name=slmjax-v4", "--zone=us-central2-b", "--config.data_path=/mnt/gcs/units"]
_REFUSED_252 = (
    "slmjax-sweep: s309m_d6.2e8: train.batch_size=252 / train.micro_batches=1 is not divisible by "
    "the 16 batch shards (mesh.data * mesh.fsdp), on slmjax-v4, a v4-32 slice of 16 JAX devices "
    "(and 14 more): give that size a mesh that fits (e.g. mesh.tensor in its sizes.NAME.overrides) "
    "or leave its runs out with --only")


def test_tpu_dry_run_refuses_batches_the_slice_cannot_shard():
    # A v4-32 has 16 JAX devices (one per chip): PAPER.md's 252 (309M, 8 runs), 456 (823M, 6) and
    # 494 (823M, 1) do not divide over them, and would each fail at their start on the pod.
    proc = sweep(*_PAPER_TPU, "--tpu_type=v4-32", "--dry_run")
    assert proc.returncode == 1 and "gcloud" not in proc.stdout, proc.stdout
    assert proc.stderr.strip().splitlines() == [_REFUSED_252]
    # On a v6e-8 (8 devices) 456 divides too: 252 (8 runs) and 494 (1) remain.
    proc = sweep(*_PAPER_TPU, "--tpu_type=v6e-8", "--dry_run")
    assert proc.returncode == 1 and "a v6e-8 slice of 8 JAX devices (and 8 more)" in proc.stderr
    # The runs that fit are planned as before.
    proc = sweep(*_PAPER_TPU, "--tpu_type=v4-32", "--dry_run", "--only=^s(20|85|155)m_|^s823m_d8.2e10$")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("gcloud compute tpus tpu-vm ssh slmjax-v4 ") == 3 * (8 + 4) + 1
    assert "not checked" not in proc.stdout
    # A type the sweep does not know is one line, before the plan.
    proc = sweep(*_PAPER_TPU, "--tpu_type=v4-31", "--dry_run")
    assert proc.returncode != 0 and proc.stdout == "", proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "slmjax-sweep: --tpu_type='v4-31' is not a TPU type this sweep knows (v2-N, v3-N, v4-N, "
        "v5p-N with N even, v5litepod-N, v5e-N or v6e-N)"]


def test_tpu_dry_run_without_a_type_says_it_checked_nothing(tmp_path):
    # A dry run asks no one (it may run off the cloud): it plans the runs and says what it skipped.
    fake, env = _slice(tmp_path)
    proc = sweep(*_PAPER_TPU, "--dry_run", env=env)
    assert proc.returncode == 0, proc.stderr
    assert ("# note: the runs' batches were not checked against the devices of slmjax-v4: a launch "
            "asks gcloud for its accelerator type; give --tpu_type (e.g. v4-32) to check them") \
        in proc.stdout.splitlines()
    assert proc.stdout.count("gcloud compute tpus tpu-vm ssh slmjax-v4 ") == 52
    assert not (fake / "gcloud.log").exists()


def test_tpu_launch_asks_gcloud_for_the_slice_type_before_starting_a_run(tmp_path):
    fake, env = _slice(tmp_path)
    args = ["--config=configs/sweeps/paper_grid.py", f"--root={tmp_path / 'runs'}", "--launcher=tpu",
            "--tpu_name=slmjax-v4", "--zone=us-central2-b", "--project=proj",
            "--config.data_path=/mnt/gcs/units", "--only=^s20m_d4.1e7$|^s309m_d6.2e8$"]
    log = lambda: (fake / "gcloud.log").read_text().splitlines()  # noqa: E731
    proc = sweep(*args, env=env)   # the stand-in describes a v4-32
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "slmjax-sweep: s309m_d6.2e8: train.batch_size=252 / train.micro_batches=1 is not divisible "
        "by the 16 batch shards (mesh.data * mesh.fsdp), on slmjax-v4, a v4-32 slice of 16 JAX "
        "devices: give that size"), proc.stderr
    assert "compute tpus tpu-vm describe slmjax-v4 --zone=us-central2-b --project=proj " \
           "--format=value(acceleratorType)" in log()
    assert not any("--worker=all" in c for c in log()), "a run started before the check"
    # A slice whose type gcloud cannot tell, or tells as one this sweep does not know (made with
    # --topology, a newer generation), still launches, unchecked as before the check, with a note.
    for fake_env, said in (
            ({"FAKE_DESCRIBE_ERROR": "ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: "
              "Resource 'slmjax-v4' was not found"},
             "could not read the accelerator type of slmjax-v4 in us-central2-b (gcloud compute tpus "
             "tpu-vm describe): ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: Resource "
             "'slmjax-v4' was not found; give --tpu_type (e.g. v4-32) to check them"),
            ({"FAKE_TYPE": ""}, "(gcloud compute tpus tpu-vm describe): it printed no "
                                "acceleratorType; give --tpu_type (e.g. v4-32) to check them"),
            ({"FAKE_TYPE": "v9z-8"}, "gcloud's acceleratorType of slmjax-v4='v9z-8' is not a TPU "
                                     "type this sweep knows")):
        started = sum("--worker=all" in c for c in log())
        proc = sweep(*args, env={**env, **fake_env})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "# note: the runs' batches were not checked against the devices of slmjax-v4: " \
            in proc.stdout and said in proc.stdout, proc.stdout
        assert sum("--worker=all" in c for c in log()) == started + 2
        for r in ("s20m_d4.1e7", "s309m_d6.2e8"):
            (tmp_path / "runs" / r / "run.json").unlink()
    # On a v4-8 (4 devices) 252 divides: both runs start. --tpu_type is taken without asking.
    started = sum("--worker=all" in c for c in log())
    proc = sweep(*args, env={**env, "FAKE_TYPE": "v4-8"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sum("--worker=all" in c for c in log()) == started + 2 and "not checked" not in proc.stdout
    (tmp_path / "runs" / "s309m_d6.2e8" / "run.json").unlink()
    described = sum(" describe " in c for c in log())
    proc = sweep(*args, "--tpu_type=v4-8", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sum(" describe " in c for c in log()) == described
    assert sum("--worker=all" in c for c in log()) == started + 3
