"""slmjax.train.distributed: where the process layout comes from, and two real processes on CPU."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from slmjax.train import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CLUSTER_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID",
                 "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_NODELIST",
                 "SLURM_STEP_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE", "SLURM_GPUS_ON_NODE",
                 "SLURM_GPUS_PER_TASK", "CUDA_VISIBLE_DEVICES")


@pytest.fixture
def clean_env(monkeypatch):
    for name in _CLUSTER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_on_tpu_vm", lambda: False)
    return monkeypatch


def test_one_process_is_a_no_op(clean_env):
    info, kwargs = distributed.resolve()
    assert info == distributed.ProcessInfo("single", 1, 0) and kwargs == {}
    info, kwargs = distributed.resolve("localhost:1234", 1, 0)
    assert info.source == "single" and kwargs == {}
    for k, v in dict(SLURM_JOB_ID="5", SLURM_NTASKS="1", SLURM_PROCID="0", SLURM_LOCALID="0",
                     SLURM_STEP_NODELIST="gpu01").items():
        clean_env.setenv(k, v)
    assert distributed.resolve()[0].source == "single"
    # An sbatch script's own shell (no job step yet) is one process even with several tasks.
    clean_env.setenv("SLURM_NTASKS", "4")
    clean_env.delenv("SLURM_STEP_NODELIST")
    assert distributed.resolve()[0].source == "single"


def test_explicit_arguments_then_environment(clean_env):
    info, kwargs = distributed.resolve("h:1", 4, 2)
    assert info == distributed.ProcessInfo("explicit", 4, 2, "h:1")
    assert kwargs == dict(coordinator_address="h:1", num_processes=4, process_id=2)
    clean_env.setenv("JAX_COORDINATOR_ADDRESS", "host0:9999")
    clean_env.setenv("JAX_NUM_PROCESSES", "2")
    clean_env.setenv("JAX_PROCESS_ID", "1")
    info, kwargs = distributed.resolve()
    assert kwargs == dict(coordinator_address="host0:9999", num_processes=2, process_id=1)
    assert distributed.resolve(process_id=0)[1]["process_id"] == 0   # arguments win


def test_incomplete_or_wrong_settings_are_one_clear_error(clean_env):
    with pytest.raises(distributed.DistributedError, match="missing num_processes, process_id"):
        distributed.resolve("h:1")
    with pytest.raises(distributed.DistributedError, match=r"process_id=2 must lie in \[0, num_processes=2\)"):
        distributed.resolve("h:1", 2, 2)
    clean_env.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(distributed.DistributedError, match=r"\$JAX_NUM_PROCESSES='two' is not an integer"):
        distributed.resolve()


def test_slurm_one_task_per_node_keeps_every_gpu_of_the_node(clean_env):
    for k, v in dict(SLURM_JOB_ID="77", SLURM_NTASKS="4", SLURM_PROCID="3", SLURM_LOCALID="0",
                     SLURM_STEP_NODELIST="gpu[01-04]", SLURM_STEP_TASKS_PER_NODE="1(x4)",
                     CUDA_VISIBLE_DEVICES="4,5,6,7").items():
        clean_env.setenv(k, v)
    info, kwargs = distributed.resolve()
    assert info.source == "slurm" and info.num_processes == 4 and info.process_id == 3
    assert kwargs == {"local_device_ids": [0, 1, 2, 3]}
    # One task per GPU: JAX's own default (one device per task).
    clean_env.setenv("SLURM_STEP_TASKS_PER_NODE", "8(x4)")
    assert distributed.resolve()[1] == {}


def test_tpu_vm_uses_jax_detection(clean_env):
    clean_env.setattr(distributed, "_on_tpu_vm", lambda: True)
    info, kwargs = distributed.resolve()
    assert info.source == "tpu" and kwargs == {}


WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from slmjax.train import distributed
    info = distributed.initialize()
    import jax, jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    x = np.arange(8 * 6, dtype=np.float32).reshape(8, 6) / 7.0
    sh = NamedSharding(mesh, P("data"))
    arr = jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])
    f = jax.jit(lambda a: (jnp.sum(jnp.tanh(a) ** 2), jnp.mean(a, axis=0)),
                out_shardings=NamedSharding(mesh, P()))
    total, mean = f(arr)
    print(json.dumps({"source": info.source, "process": jax.process_index(),
                      "processes": jax.process_count(), "devices": jax.device_count(),
                      "local": jax.local_device_count(), "main": distributed.is_main_process(),
                      "total": float(total), "mean": np.asarray(mean).tolist()}))
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _worker_env(devices, **extra):
    env = {k: v for k, v in os.environ.items() if k not in _CLUSTER_VARS}
    env.update(PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **extra)
    return env


def test_two_processes_on_localhost_compute_what_one_process_computes():
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=_worker_env(4, JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                                              JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
             for i in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    single = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True,
                            env=_worker_env(8), timeout=120)
    assert single.returncode == 0, single.stderr[-2000:]
    one = json.loads(single.stdout.strip().splitlines()[-1])
    assert one["source"] == "single" and one["processes"] == 1 and one["devices"] == 8
    x = np.arange(48, dtype=np.float64).reshape(8, 6) / 7.0
    for i, o in enumerate(outs):
        assert (o["source"], o["process"], o["processes"], o["devices"], o["local"]) == ("explicit", i, 2, 8, 4)
        assert o["main"] == (i == 0)
        assert o["total"] == pytest.approx(np.sum(np.tanh(x) ** 2), rel=1e-5)
        # Cross-process all-reduce (gloo) may sum in another order: equal to float32 rounding.
        np.testing.assert_allclose([o["total"], *o["mean"]], [one["total"], *one["mean"]], rtol=1e-6)
        np.testing.assert_allclose(o["mean"], x.mean(axis=0), rtol=1e-6)


# slmjax-train with the process layout set up first (as the installed console script does once
# slmjax.train.cli calls slmjax.train.distributed.initialize()).
TRAIN = ("import sys; from slmjax.train import distributed; distributed.initialize(); "
         "from slmjax.train.cli import run; sys.argv[0] = 'slmjax-train'; run()")


def _losses(workdir):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return ({r["step"]: r["loss"] for r in rows if "loss" in r},
            {r["step"]: r["test_loss"] for r in rows if "test_loss" in r})


@pytest.mark.slow   # ~1-2 min on a shared 2-core machine: three trainers start and compile
@pytest.mark.parametrize("per_process,mesh", [
    (4, []),
    # the two heads' tensor shards on the two processes: both hold every row of each batch, so
    # both must feed all of them (each fed its half, as though its rows were its own)
    (1, ["--config.mesh.data=1", "--config.mesh.fsdp=1", "--config.mesh.tensor=2"]),
], ids=["batch_split", "tensor_across_processes"])
def test_two_processes_train_tiny_to_the_losses_of_one_process(tmp_path, per_process, mesh):
    args = ["--config=configs/train.py:tiny", "--config.model.vocab_size=102",
            "--config.train.steps=20", "--config.train.log_every=1",
            "--config.train.eval_every=10", "--config.checkpoint.every_steps=10", *mesh]
    port = _free_port()
    two = str(tmp_path / "two")
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN, *args, f"--workdir={two}"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=_worker_env(per_process, JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                                              JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
             for i in range(2)]
    one = str(tmp_path / "one")
    single = subprocess.Popen([sys.executable, "-c", TRAIN, *args, f"--workdir={one}"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=_worker_env(2 * per_process))
    for p in procs + [single]:
        out = p.communicate(timeout=900)[0]
        assert p.returncode == 0, out[-3000:]

    run_two = json.loads(open(os.path.join(two, "run.json")).read())
    run_one = json.loads(open(os.path.join(one, "run.json")).read())
    assert run_two["processes"] == 2 and run_one["processes"] == 1
    assert run_two["devices"] == run_one["devices"] == 2 * per_process
    assert run_two["status"] == run_one["status"] == "completed"
    train_two, test_two = _losses(two)
    train_one, test_one = _losses(one)
    assert sorted(train_two) == sorted(train_one) == list(range(1, 21))   # metrics written once
    assert sorted(test_two) == sorted(test_one) == [10, 20]
    # Same global batches, same updates: equal up to float32 reduction order across processes.
    np.testing.assert_allclose([train_two[s] for s in range(1, 21)],
                               [train_one[s] for s in range(1, 21)], rtol=1e-5)
    np.testing.assert_allclose([test_two[10], test_two[20]], [test_one[10], test_one[20]], rtol=1e-5)
    assert train_one[20] < train_one[1]
    # Checkpoints written by both processes restore in one process: the final parameters agree.
    from slmjax.train.checkpoint import restore_params
    _, p_two, s_two = restore_params(two)
    _, p_one, s_one = restore_params(one)
    assert s_two == s_one == 20
    import jax
    for a, b in zip(jax.tree.leaves(p_two), jax.tree.leaves(p_one)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
