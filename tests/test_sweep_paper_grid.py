"""`slmjax-sweep --dry_run` on the study's grids, checked against numbers computed here from PAPER.md."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# PAPER.md, "Model": total parameters with the tied embedding counted once, and each size's width.
PAPER_N = {"s20m": 20_710_912, "s85m": 85_339_392, "s155m": 154_680_320, "s309m": 308_845_568,
           "s823m": 823_179_264}
DIM = {"s20m": 512, "s85m": 768, "s155m": 1024, "s309m": 1024, "s823m": 2048}
# PAPER.md, "Training recipe": sequences of 2050 per update; 823M's longest runs 494 and 608.
BATCH = {"s20m": 64, "s85m": 128, "s155m": 256, "s309m": 252, "s823m": 456}
TOKENS_PER_UPDATE = {"s20m": 131_200, "s85m": 262_400, "s155m": 524_800, "s309m": 516_600,
                     "s823m": 934_800}
RATIOS = (2, 4, 8, 10, 20, 32, 64, 100)
SEQ = 2050
UNITS = 10_890_000_000      # PAPER.md, "Data": 10.89B units
UNIGRAM = 6_310_000_000     # 6.31B unigram tokens


def sweep(*args, cwd=REPO):
    proc = subprocess.run([sys.executable, "-m", "slmjax.launch.cli", *args], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def parse(out):
    """{key: row dict} from the table, and {key: {override: value}} from the commands."""
    lines = [ln for ln in out.splitlines() if not ln.startswith("# note:")]
    head = lines[0].split()
    assert head == ["key", "N", "D", "D/N", "epochs", "C=6ND", "batch", "steps", "warmup", "workdir"]
    rows, i = {}, 1
    while not re.match(r"^\d+ runs, total C", lines[i]):
        cells = lines[i].split()
        rows[cells[0]] = dict(zip(head, cells))
        i += 1
    n_runs = int(lines[i].split()[0])
    cmds = {}
    for line in lines[i + 1:]:
        workdir = re.search(r"--workdir=(\S+)", line).group(1)
        key = workdir.rsplit("/", 1)[1]
        cmds[key] = dict(re.findall(r"--config\.([\w.]+)=([^\s']+)", line))
        cmds[key]["config"] = re.search(r"--config=(\S+)", line).group(1)
    return rows, n_runs, cmds


def key(size, d):
    m, e = f"{d:.1e}".split("e")
    return f"{size}_d{m}e{int(e)}"


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("paper"))
    out = sweep("--config=configs/sweeps/paper_grid.py", f"--root={root}",
                "--config.data_path=/data/units", "--dry_run")
    return root, parse(out), out


def expected_paper_runs():
    runs = {}
    for size, n in PAPER_N.items():
        for r in RATIOS:
            b = {64: 494, 100: 608}.get(r, BATCH[size]) if size == "s823m" else BATCH[size]
            runs[key(size, r * n)] = (size, n, r * n, b)
    for size in ("s20m", "s85m", "s155m"):
        for e in (2, 4, 8, 10):
            runs[key(size, e * UNITS)] = (size, PAPER_N[size], e * UNITS, BATCH[size])
    return runs


def test_paper_batches_match_tokens_per_update():
    for size, b in BATCH.items():
        assert b * SEQ == TOKENS_PER_UPDATE[size]


def test_paper_grid_lists_every_run_with_n_d_c_steps(paper):
    root, (rows, n_runs, cmds), _ = paper
    want = expected_paper_runs()
    assert n_runs == len(rows) == len(cmds) == len(want) == 52   # "over 50 SLMs"
    assert set(rows) == set(want) and set(cmds) == set(want)
    for k, (size, n, d, b) in want.items():
        row, cmd = rows[k], cmds[k]
        steps = -(-d // (b * SEQ))
        assert int(row["N"].replace(",", "")) == n, k
        assert int(cmd["train.tokens"]) == d and float(row["D"]) == pytest.approx(d, rel=1e-3)
        assert float(row["C=6ND"]) == pytest.approx(6 * n * d, rel=1e-3), k
        assert int(cmd["train.steps"]) == steps and int(row["steps"].replace(",", "")) == steps
        assert int(cmd["train.batch_size"]) == int(row["batch"]) == b
        assert int(cmd["data.seq_len"]) == SEQ
        # The schedule ends at the budget: the last update is the first to reach D tokens.
        assert (steps - 1) * b * SEQ < d <= steps * b * SEQ
        # Warm-up: max(100, 1% of steps), capped at 1000 (PAPER.md).
        assert int(row["warmup"].replace(",", "")) == min(1000, max(100, steps // 100)), k
        assert float(row["epochs"]) == pytest.approx(d / UNITS, rel=2e-3)
        assert cmd["config"] == f"{REPO}/configs/train.py:{size}"
        assert cmd["data.path"] == "/data/units" and cmd["data.kind"] == "units"
        assert "data.max_unique_tokens" not in cmd   # the paper's repeats run over the whole corpus
        assert row["workdir"] == f"{root}/{k}"
    flops = [6 * n * d for _, n, d, _ in want.values()]
    assert 3e15 < min(flops) < 2e16 and 3.5e20 < max(flops) < 4.5e20   # "about 1e16 to 4e20"
    assert "s85m_d2.7e9" in rows      # DESIGN.md's example key
    assert "s20m_d1.1e11" in rows     # the released 20M run at 108.9B tokens (10 epochs)


def test_local_dry_run_prints_runnable_commands(paper):
    root, _, out = paper
    cmd = next(line for line in out.splitlines() if "/s85m_d2.7e9 " in line).split()
    assert os.path.basename(cmd[0]) == "slmjax-train"
    assert cmd[1] == f"--config={REPO}/configs/train.py:s85m"
    assert cmd[2] == f"--workdir={root}/s85m_d2.7e9"


@pytest.mark.parametrize("slice_, tpu_type, layouts", [
    ("v4-32", "v4-32", {"s309m": ("4", "4", "3"), "s823m": ("8", "2", "19")}),
    ("v5e-16", "v5litepod-16", {"s155m": (None, None, "2"), "s309m": ("4", "4", "7"), "s823m": ("8", "2", "19")}),
])
def test_slice_layouts_run_51_of_52_on_16_chips(tmp_path, slice_, tpu_type, layouts):
    """paper_grid.py:v4-32 (32 GiB chips) and :v5e-16 (16 GiB): the meshes and micro-batches that
    tools/compile_step.py compiled to fit; every update keeps the paper's batch. Only the
    494-sequence run does not divide, and the sweep refuses it by name."""
    args = [f"--config=configs/sweeps/paper_grid.py:{slice_}", f"--root={tmp_path}", "--config.data_path=/data/units",
            "--launcher=tpu", "--tpu_name=tpu", "--zone=z", f"--tpu_type={tpu_type}", "--dry_run"]
    rows, n_runs, cmds = parse(sweep(*args, r"--only=^(?!s823m_d5\.3e10$)"))
    assert n_runs == len(cmds) == 51 and "s823m_d5.3e10" not in rows
    for key, cmd in cmds.items():
        size = key.split("_")[0]
        got = tuple(cmd.get(f) for f in ("mesh.fsdp", "mesh.tensor", "train.micro_batches"))
        assert got == layouts.get(size, (None, None, None)), key
        assert int(cmd["train.batch_size"]) == int(rows[key]["batch"])
    proc = subprocess.run([sys.executable, "-m", "slmjax.launch.cli", *args], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 1 and "slmjax-sweep: s823m_d5.3e10: train.batch_size=494" in proc.stderr


def test_gpu_layout_runs_all_52_on_two_nodes_of_8(tmp_path):
    """paper_grid.py:h100-2x8: the meshes and micro-batches tools/compile_step.py compiled to fit
    two nodes of 8 80 GB GPUs. 823M over 2 FSDP x 8 tensor shards splits all three of its batches
    (456, 494, 608 in 19 micro-batches), so the sweep takes every run."""
    out = sweep("--config=configs/sweeps/paper_grid.py:h100-2x8", f"--root={tmp_path}", "--config.data_path=/data/units",
                "--launcher=slurm", "--slurm_partition=gpu", "--nodes=2", "--gpus_per_node=8", "--dry_run")
    lines = out.splitlines()
    end = next(i for i, ln in enumerate(lines) if re.match(r"^\d+ runs, total C", ln))
    rows, n_runs, cmds = parse("\n".join(lines[:end + 1] + [ln for ln in lines if "slmjax-train --config=" in ln]))
    assert n_runs == len(cmds) == 52
    layouts = {"s309m": ("4", "4", "3"), "s823m": ("2", "8", "19")}
    for key, cmd in cmds.items():
        size = key.split("_")[0]
        got = tuple(cmd.get(f) for f in ("mesh.fsdp", "mesh.tensor", "train.micro_batches"))
        assert got == layouts.get(size, (None, None, None)), key
        assert int(cmd["train.batch_size"]) == int(rows[key]["batch"])
    assert {rows[k]["batch"] for k in cmds if k.startswith("s823m_")} == {"456", "494", "608"}


def test_unigram_grid_has_the_coarse_vocabulary(tmp_path):
    out = sweep("--config=configs/sweeps/unigram_grid.py", f"--root={tmp_path}", "--dry_run")
    assert out.startswith("# note: unigram_grid trains on a unit dataset")
    rows, n_runs, cmds = parse(out)
    assert n_runs == 40
    for size, n in PAPER_N.items():
        n_uni = n + (5002 - 502) * DIM[size]     # 5000 pieces + EOS + PAD, tied embedding
        for r in RATIOS:
            k = "uni_" + key(size, r * n_uni)
            assert int(rows[k]["N"].replace(",", "")) == n_uni
            assert int(cmds[k]["model.vocab_size"]) == 5002
            assert int(cmds[k]["train.tokens"]) == r * n_uni
            assert float(rows[k]["epochs"]) == pytest.approx(r * n_uni / UNIGRAM, rel=2e-3)


@pytest.mark.parametrize("args, message", [
    (["--config=configs/sweeps/paper_grid.py", "--config.data_path=/d", "--config.ratios=(2,-1)"],
     "ratios must be positive numbers, got -1"),
    (["--config=configs/sweeps/nope.py"],
     "[Errno 2] No such file or directory: 'configs/sweeps/nope.py'"),
    (["--config=configs/sweeps/paper_grid.py", "--config.ratio=(2,)"],
     "the sweep config has no field ratio"),
    (["--config=configs/sweeps/paper_grid.py", "--config.data_path=/d",
      "--config.sizes.s309m.overrides.mesh.tensor=4"],   # an inner part missing: only that flag named
     "the sweep config has no field sizes.s309m.overrides.mesh.tensor"),
    (["--config=configs/sweeps/paper_grid.py", "--launcher=tpu", "--zone=z"],
     "--launcher=tpu needs --tpu_name (the TPU VM slice)"),
    (["--config=configs/sweeps/unigram_grid.py", "--launcher=slurm", "--nodry_run"],
     "unigram_grid trains on a unit dataset: give it with --config.data_path=DIR (several joined by ',')"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "slmjax.launch.cli", f"--root={tmp_path}", "--dry_run", *args],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"slmjax-sweep: {message}"]
    assert proc.stdout == ""
