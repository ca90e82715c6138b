"""Local launcher mechanics with a stand-in trainer that keeps the workdir contract.

The stand-in resumes from its newest checkpoints/<step>/, checkpoints every 2 steps, logs each step
it trains to steps.log and writes run.json status 'completed' at the end, as slmjax-train does.
The sweep is killed with SIGKILL (the hardest case) and with SIGTERM, then launched again.
"""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from slmjax.launch import grid, local, status

FAKE_TRAINER = textwrap.dedent("""
    import json, os, sys, time
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    wd, steps = args["--workdir"], int(args["--config.train.steps"])
    os.makedirs(os.path.join(wd, "checkpoints"), exist_ok=True)
    def write_run(st):
        with open(os.path.join(wd, "run.json.tmp"), "w") as f:
            json.dump({"status": st, "steps": steps}, f)
        os.replace(os.path.join(wd, "run.json.tmp"), os.path.join(wd, "run.json"))
    with open(os.path.join(wd, "pids"), "a") as f:
        f.write(f"{os.getpid()}\\n")
    start = max([int(d) for d in os.listdir(os.path.join(wd, "checkpoints"))], default=0)
    write_run("running")
    with open(os.path.join(wd, "steps.log"), "a") as log:
        for s in range(start + 1, steps + 1):
            time.sleep(0.05)
            log.write(f"{s}\\n"); log.flush()
            if s % 2 == 0 or s == steps:
                os.makedirs(os.path.join(wd, "checkpoints", str(s)))
    if os.environ.get("FAKE_FAIL") == os.path.basename(wd):
        sys.exit(3)
    write_run("completed")
""")

DRIVER = textwrap.dedent("""
    import sys
    from slmjax.launch import grid, local
    root, trainer, keep_going = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    runs = [grid.Run(key=f"r{i}", size="x", n_params=10, tokens=100, batch_size=1, seq_len=10, warmup=1,
                     steps=10, unique_tokens=None, restricted=False, workdir=f"{root}/r{i}",
                     overrides=(("train.steps", 10),), train_config="t.py:x") for i in range(3)]
    sys.exit(local.launch(runs, root, program=[sys.executable, trainer], keep_going=keep_going))
""")


def _start(tmp_path, keep_going=False, env=None):
    trainer, driver = tmp_path / "trainer.py", tmp_path / "driver.py"
    trainer.write_text(FAKE_TRAINER)
    driver.write_text(DRIVER)
    return subprocess.Popen([sys.executable, str(driver), str(tmp_path / "root"), str(trainer),
                             "1" if keep_going else "0"], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_steps(path, n, proc, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and len(path.read_text().split()) >= n:
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} steps")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_sweep_relaunched_finishes_every_run_exactly_once(tmp_path, sig):
    root = tmp_path / "root"
    proc = _start(tmp_path)
    _wait_for_steps(root / "r1" / "steps.log", 5, proc)
    proc.send_signal(sig)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 128 + signal.SIGTERM), out
    # The trainer does not outlive the sweep (parent-death signal or forwarded SIGTERM).
    pid = int((root / "r1" / "pids").read_text().split()[0])
    t0 = time.time()
    while _alive(pid) and time.time() - t0 < 10:
        time.sleep(0.05)
    assert not _alive(pid)
    assert status.run_status(str(root / "r0")) == "completed"
    assert status.run_status(str(root / "r1")) == "running"
    assert not (root / "r2").exists()

    proc = _start(tmp_path)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert "r0: completed, skipped" in out and "r1: resuming" in out and "r2: starting" in out

    for i in range(3):
        assert status.run_status(str(root / f"r{i}")) == "completed"
        trained = [int(s) for s in (root / f"r{i}" / "steps.log").read_text().split()]
        assert sorted(set(trained)) == list(range(1, 11))
        # Only the steps after the last checkpoint (every 2 steps) may have been trained twice.
        assert len(trained) - 10 <= 2, trained
    assert len((root / "r0" / "pids").read_text().split()) == 1   # never restarted
    assert len((root / "r1" / "pids").read_text().split()) == 2   # resumed once
    events = status.read_events(str(root))
    completed = [e["key"] for e in events if e["event"] == "completed"]
    assert sorted(completed) == ["r0", "r1", "r2"]
    assert [e["key"] for e in events if e["event"] == "skip"] == ["r0"]
    # Each run's output is in ROOT/logs/KEY.log, one header per launch of the run.
    assert (root / "logs" / "r1.log").read_text().count("==== ") == 2
    assert (root / "logs" / "r0.log").read_text().count("==== ") == 1


def test_failed_run_stops_the_sweep_unless_keep_going(tmp_path):
    proc = _start(tmp_path, env={"FAKE_FAIL": "r1"})
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1 and "r1: failed" in out, out
    assert not (tmp_path / "root" / "r2").exists()
    proc = _start(tmp_path, keep_going=True, env={"FAKE_FAIL": "r1"})
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1 and "1 run(s) failed: r1" in out, out
    assert status.run_status(str(tmp_path / "root" / "r2")) == "completed"


def test_second_sweep_on_the_same_root_is_refused(tmp_path):
    proc = _start(tmp_path)
    try:
        _wait_for_steps(tmp_path / "root" / "r0" / "steps.log", 1, proc)
        with pytest.raises(grid.SweepError, match=r"another sweep \(pid \d+\) is running"):
            local.launch([], str(tmp_path / "root"))
    finally:
        proc.kill()
        proc.communicate()


def test_dry_run_lists_commands_and_skips_completed(tmp_path, capsys):
    runs = [grid.Run(key=k, size="x", n_params=10, tokens=100, batch_size=1, seq_len=10, steps=10, warmup=1,
                     unique_tokens=None, restricted=False, workdir=str(tmp_path / k),
                     overrides=(("train.steps", 10), ("data.path", "a b")), train_config="t.py:x")
            for k in ("a", "b")]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "run.json").write_text(json.dumps({"status": "completed"}))
    assert local.launch(runs, str(tmp_path), dry_run=True, program=["TRAIN"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["# a: completed, skipped",
                   f"TRAIN --config=t.py:x --workdir={tmp_path}/b --config.train.steps=10 "
                   "'--config.data.path=a b'"]
    assert not (tmp_path / "sweep.jsonl").exists() and not (tmp_path / ".sweep.lock").exists()


def test_sigterm_just_before_the_trainer_starts_still_stops_it(tmp_path, monkeypatch):
    # A SIGTERM that reaches the sweep after its between-runs check but before the trainer's
    # process is known (the start event's fsync, opening the log, fork/exec) has no trainer to be
    # forwarded to: the trainer must still get it, not train its whole run while the sweep waits.
    log_event = status.log_event

    def signal_at_start(root, event, key, **fields):
        log_event(root, event, key, **fields)
        if event == "start":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(status, "log_event", signal_at_start)
    runs = [grid.Run(key=k, size="x", n_params=10, tokens=100, batch_size=1, seq_len=10, steps=10,
                     warmup=1, unique_tokens=None, restricted=False, workdir=str(tmp_path / k),
                     overrides=(), train_config="t.py:x") for k in ("a", "b")]
    t0 = time.time()
    rc = local.launch(runs, str(tmp_path), program=[sys.executable, "-c", "import time; time.sleep(30)"])
    assert rc == 128 + signal.SIGTERM
    assert time.time() - t0 < 15
    assert [e["event"] for e in status.read_events(str(tmp_path))] == ["start", "interrupted"]


def test_a_completed_run_of_another_config_is_not_skipped_as_this_sweeps(tmp_path, capsys):
    # The same sweep launched again into its root with another data path (or any field that
    # changes the math) has the same run keys: each workdir said 'completed' and was skipped, so
    # the sweep reported the old config's results as the new one's and trained nothing.
    from slmjax.launch import trainconf
    from slmjax.train.run_files import config_dict

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    train_config = os.path.join(repo, "configs", "train.py")
    trained = trainconf.load(train_config, "tiny", [("train.lr", 1e-3)])
    now = trainconf.load(train_config, "tiny", [("train.lr", 2e-3)])

    def run(cfg):
        return grid.Run(key="a", size="x", n_params=10, tokens=100, batch_size=1, seq_len=10,
                        steps=10, warmup=1, unique_tokens=None, restricted=False,
                        workdir=str(tmp_path / "a"), overrides=(("train.lr", cfg.train.lr),),
                        train_config="t.py:x", config=cfg)

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "run.json").write_text(json.dumps({"status": "completed"}))
    (tmp_path / "a" / "config.json").write_text(json.dumps(config_dict(trained)))
    assert local.launch([run(trained)], str(tmp_path), dry_run=True, program=["TRAIN"]) == 0
    assert capsys.readouterr().out.splitlines() == ["# a: completed, skipped"]
    for dry_run in (True, False):
        with pytest.raises(grid.SweepError, match=r"a: .* holds a completed run with another config "
                           r"\(train\.lr: 0\.001 in the workdir vs 0\.002 now\)"):
            local.launch([run(now)], str(tmp_path), dry_run=dry_run, program=["TRAIN"])
    # the SLURM and TPU launchers read the same workdirs alike (they skipped it as completed)
    from slmjax.launch import slurm, tpu
    launchers = [lambda r: slurm.launch([r], str(tmp_path), slurm.SlurmOptions(gpus_per_node=0, repo_dir=str(tmp_path)),
                                        dry_run=True, out=io.StringIO()),
                 lambda r: tpu.launch([r], str(tmp_path), tpu.TpuOptions(name="x", zone="z"),
                                      dry_run=True, out=io.StringIO())]
    for launch in launchers:
        with pytest.raises(grid.SweepError, match=r"holds a completed run with another config"):
            launch(run(now))
    out = io.StringIO()
    assert slurm.launch([run(trained)], str(tmp_path), slurm.SlurmOptions(gpus_per_node=0, repo_dir=str(tmp_path)),
                        dry_run=True, out=out) == 0
    assert "# a: completed, skipped" in out.getvalue()
