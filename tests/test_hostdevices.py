"""A CPU-only host split into one device per core: how many, the mesh they form, and a run on them."""

import json
import os
import subprocess
import sys

import pytest

from slmjax import hostdevices
from slmjax.train import mesh as mesh_lib
from test_train_step_sharded import ROOT, load_config


def test_largest_divisor():
    assert [hostdevices.largest_divisor(16, c) for c in (1, 2, 3, 5, 8, 64)] == [1, 2, 2, 4, 8, 16]
    assert hostdevices.largest_divisor(252, 16) == 14  # s309m's batch on a 16-core host
    assert hostdevices.largest_divisor(7, 4) == 1
    assert hostdevices.largest_divisor(0, 4) == 1


def test_a_device_count_fixed_by_the_user_wins():
    assert hostdevices.forced_by_user({"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert hostdevices.forced_by_user({"JAX_NUM_CPU_DEVICES": "4"})
    assert not hostdevices.forced_by_user({"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=true"})
    assert not hostdevices.forced_by_user({})


def test_no_split_when_an_accelerator_runs_the_program(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
    assert hostdevices.accelerator_installed() and hostdevices.request(4) == 1
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert not hostdevices.accelerator_installed()


@pytest.mark.parametrize("cores, overrides, expected", [
    (2, {}, 2),                                            # tiny: batch 16
    (8, {}, 8),
    (64, {}, 16),                                          # no more devices than rows
    (4, {"train.batch_size": 6}, 3),
    (8, {"train.batch_size": 8, "train.micro_batches": 4}, 2),  # the micro-batch is split
    (8, {"mesh.fsdp": 4}, 1),                              # a mesh laid out by hand: no split
    (8, {"mesh.data": -1, "mesh.fsdp": 1}, 8),             # 1 / -1 axes are not a layout
    (2, {"mesh.cpu_devices": 3}, 3),                       # asked for: as asked
    (8, {"mesh.cpu_devices": 1}, 1),
])
def test_cpu_split(monkeypatch, cores, overrides, expected):
    monkeypatch.setattr(hostdevices, "host_cores", lambda: cores)
    config = load_config("tiny")
    for key, value in overrides.items():
        section, field = key.split(".")
        config[section][field] = value
    assert mesh_lib.cpu_split(config) == expected


def _train_cli(*args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "slmjax.train.cli", "--config=configs/train.py:tiny",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_cli_splits_the_host_along_data():
    auto = _train_cli("--dry_run")
    assert auto.returncode == 0, auto.stderr
    cores = len(os.sched_getaffinity(0))
    data = max(d for d in range(1, min(16, cores) + 1) if 16 % d == 0)  # tiny's batch: 16
    assert json.loads(auto.stdout.splitlines()[-1])["mesh"] == {"data": data, "fsdp": 1, "tensor": 1}
    four = _train_cli("--dry_run", "--config.mesh.cpu_devices=4")
    assert json.loads(four.stdout.splitlines()[-1])["mesh"] == {"data": 4, "fsdp": 1, "tensor": 1}
    by_hand = _train_cli("--dry_run", "--config.mesh.cpu_devices=4", "--config.mesh.data=-1",
                         "--config.mesh.fsdp=2")
    assert json.loads(by_hand.stdout.splitlines()[-1])["mesh"] == {"data": 2, "fsdp": 2, "tensor": 1}
    off = _train_cli("--dry_run", "--config.mesh.cpu_devices=1")
    assert json.loads(off.stdout.splitlines()[-1])["mesh"] == {"data": 1, "fsdp": 1, "tensor": 1}


def test_cli_names_a_split_the_batch_cannot_take():
    bad = _train_cli("--dry_run", "--config.mesh.cpu_devices=3")
    assert bad.returncode == 2
    assert "not divisible by the 3 batch shards" in bad.stderr
    negative = _train_cli("--dry_run", "--config.mesh.cpu_devices=-2")
    assert negative.returncode == 2
    assert "slmjax-train: mesh.cpu_devices=-2 must be >= 0" in negative.stderr


def test_split_run_trains_and_counts_the_host_peak_once(tmp_path):
    """A run on a host split into 2 devices: the devices are recorded, and MFU is measured
    against the host's peak once (the devices share its cores), not once per device."""
    peak = 1e11
    proc = _train_cli(f"--workdir={tmp_path}", "--config.mesh.cpu_devices=2",
                      "--config.train.steps=3", "--config.train.log_every=1",
                      "--config.train.eval_every=100", "--config.train.eval_batches=1",
                      "--config.train.final_eval_batches=1", "--config.train.progress=false",
                      "--config.checkpoint.every_steps=100", "--config.data.seq_len=32",
                      "--config.train.batch_size=4", f"--config.train.peak_flops={peak}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "completed" and run["devices"] == 2
    assert run["mesh"] == {"data": 2, "fsdp": 1, "tensor": 1}
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "tokens_per_sec" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    flops, full = run["flops_per_token"]["6n_attn"], run["flops_per_token"]["6n_attn_full"]
    for r in rows:
        assert r["mfu"] == pytest.approx(r["tokens_per_sec"] * flops / peak, rel=1e-9)
        assert r["mfu_palm"] == pytest.approx(r["tokens_per_sec"] * full / peak, rel=1e-9)


def test_split_run_evaluates_many_batches(tmp_path):
    """A full final evaluation (~150 batches) on 2 split devices completes and equals the same
    evaluation on one device. Eval steps queued back to back deadlocked XLA's CPU collectives
    (every runtime thread waiting in one device's cross-device sums; the run aborted after 40 s)."""
    losses = {}
    for devices in (2, 1):
        workdir = tmp_path / f"d{devices}"
        proc = _train_cli(f"--workdir={workdir}", f"--config.mesh.cpu_devices={devices}",
                          "--config.train.steps=1", "--config.train.final_eval_batches=0",
                          "--config.data.synthetic.test_tokens=300000",
                          "--config.train.progress=false", timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = json.loads((workdir / "run.json").read_text())
        assert run["status"] == "completed" and run["devices"] == devices
        losses[devices] = (run["final_test_loss"], run["final_test_tokens"])
    assert losses[2][1] == losses[1][1] >= 290000
    assert losses[2][0] == pytest.approx(losses[1][0], rel=1e-5)
