"""data.max_unique_tokens = U: training sees only the first U tokens of the training stream.

The reference is built here with NumPy from the utterances the test writes: the training stream is
the train utterances concatenated in shard order, and its first U tokens are the allowed ones.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from configs.train import get_config
from slmjax.data import DataError, build_pipeline
from slmjax.data.testing import random_utterances, write_unit_dataset
from slmjax.train.validate import problems

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB, T = 40, 16


def dataset(path, n_utts, seed, n_shards=3):
  """Writes a unit dataset; returns its training stream (NumPy, shard order) and the stream
  offset where each shard starts (write_unit_dataset cuts the utterance list evenly)."""
  rng = np.random.default_rng(seed)
  train = random_utterances(n_utts, VOCAB, rng, mean_len=20)
  write_unit_dataset(str(path), {"train": train, "test": random_utterances(8, VOCAB, rng)},
                     vocab_size=VOCAB, n_shards=n_shards)
  starts = np.concatenate([[0], np.cumsum([len(x) for x in train])])
  shard_starts = starts[np.linspace(0, n_utts, n_shards + 1).astype(int)]
  return np.concatenate(train).astype(np.int32), shard_starts


def config(paths, u, batch=8, mode="windows", weights=""):
  c = get_config("tiny")
  c.model.vocab_size = VOCAB
  c.data.kind, c.data.path, c.data.weights = "units", ",".join(map(str, paths)), weights
  c.data.seq_len, c.data.mode, c.data.max_unique_tokens = T, mode, u
  c.data.num_threads, c.data.prefetch = 0, 1
  c.train.batch_size = batch
  return c


def windows_of(prefix):
  """Every window of T+1 consecutive tokens inside `prefix` -> its start offset."""
  return {tuple(prefix[s:s + T + 1]): s for s in range(prefix.size - T)}


def rows(batch):
  return np.concatenate([batch["inputs"], batch["targets"][:, -1:]], axis=1)


def test_windows_come_only_from_the_first_u_tokens(tmp_path):
  stream, shards = dataset(tmp_path / "a", 300, 0)
  u = 2345                                   # ends inside an utterance of the second shard
  assert u < stream.size // 2
  pipe = build_pipeline(config([tmp_path / "a"], u))
  assert pipe.unique_tokens == u
  allowed = windows_of(stream[:u])
  outside = windows_of(stream[u - T:])       # windows that reach past token U
  it = pipe.train_iter()
  per_epoch = pipe.train.streams[0].examples_per_epoch
  n_batches = -(-3 * per_epoch // 8)          # three epochs
  seen = []
  for _ in range(n_batches):
    for w in map(tuple, rows(next(it))):
      assert w in allowed and w not in outside
      seen.append(allowed[w])
  # Each epoch takes (n_s - 1) // T windows of each shard's n_s tokens of the prefix.
  shard_tokens = np.diff(np.minimum(shards, u))
  assert shard_tokens[1] > 0 and shard_tokens[2] == 0
  assert per_epoch == sum((n - 1) // T for n in shard_tokens if n > 0)
  assert max(seen) + T + 1 <= u and len(set(seen)) > per_epoch   # phases move between epochs


def test_one_epoch_of_windows_is_exactly_the_prefix(tmp_path):
  """One shard and (U - 1) divisible by T: an epoch is the windows at 0, T, 2T, ... of the prefix."""
  stream, _ = dataset(tmp_path / "a", 200, 1, n_shards=1)
  u = 100 * T + 1
  pipe = build_pipeline(config([tmp_path / "a"], u))
  s = pipe.train.streams[0]
  assert s.examples_per_epoch == 100
  got = sorted(map(tuple, rows(s.get(np.arange(100)))))
  want = sorted(tuple(stream[k * T:k * T + T + 1]) for k in range(100))
  assert got == want
  assert pipe.epochs(25) == {"a": pytest.approx(25 * 8 / 100)}


def test_one_packed_epoch_holds_each_prefix_token_once(tmp_path):
  stream, _ = dataset(tmp_path / "a", 300, 2)
  u = 3001
  pipe = build_pipeline(config([tmp_path / "a"], u, mode="packed"))
  s = pipe.train.streams[0]
  ex = s.get(np.arange(s.examples_per_epoch))
  # Targets: every prefix token once (the cut last utterance's included).
  prefix, eos = stream[:u], VOCAB - 2
  targets = ex["targets"][ex["weights"] > 0]
  np.testing.assert_array_equal(np.bincount(targets, minlength=VOCAB),
                                np.bincount(prefix, minlength=VOCAB))
  assert targets.size == u and np.count_nonzero(ex["segment_ids"] > 0) == u
  # Inputs: each utterance is read after an EOS, so they are the prefix less each utterance's
  # last token (its EOS, or the cut utterance's last unit), and one EOS per utterance.
  last = np.append(np.flatnonzero(prefix[:-1] == eos), u - 1)
  want = np.bincount(np.delete(prefix, last), minlength=VOCAB)
  want[eos] += last.size
  np.testing.assert_array_equal(np.bincount(ex["inputs"][ex["segment_ids"] > 0], minlength=VOCAB), want)


def test_a_mixture_splits_u_by_weight(tmp_path):
  a, _ = dataset(tmp_path / "a", 300, 3)
  b, _ = dataset(tmp_path / "b", 300, 4)
  u = 4000
  pipe = build_pipeline(config([tmp_path / "a", tmp_path / "b"], u, weights="3,1"))
  assert [s.split.n_tokens for s in pipe.train.streams] == [3000, 1000]
  assert pipe.unique_tokens == u
  assert [d["unique_tokens"] for d in pipe.info()["datasets"]] == [3000, 1000]
  ok_a, ok_b = windows_of(a[:3000]), windows_of(b[:1000])
  it = pipe.train_iter()
  for _ in range(30):                         # rows 0-5 from a, rows 6-7 from b (counts 6, 2)
    r = rows(next(it))
    assert all(tuple(w) in ok_a for w in r[:6]) and all(tuple(w) in ok_b for w in r[6:])
  e = pipe.epochs(100)
  assert e["a"] == pytest.approx(e["b"], rel=0.05)   # U shared by weight: equal epochs


def test_u_follows_the_rows_each_dataset_gets(tmp_path):
  # Weights 0.7/0.3 round to 6 and 2 rows of an 8-row batch: U must split 6:2 (3000/1000),
  # not 0.7/0.3 (2800/1200, where a would run 8.6 epochs for b's 6.7).
  dataset(tmp_path / "a", 300, 3)
  dataset(tmp_path / "b", 300, 4)
  pipe = build_pipeline(config([tmp_path / "a", tmp_path / "b"], 4000, weights="0.7,0.3"))
  assert list(pipe.counts) == [6, 2]
  assert [s.split.n_tokens for s in pipe.train.streams] == [3000, 1000]
  e = pipe.epochs(100)
  assert e["a"] == pytest.approx(e["b"], rel=0.05)


@pytest.mark.parametrize("u, weights, message", [
    (10**6, "", r"data.max_unique_tokens=1000000 exceeds the \d+ training tokens of the data"),
    (100, "7,1", r"dataset b's share by its weight \(12 tokens\) is less than one window"),
    (3000, "0,1", r"dataset b's share by its weight \(3000 tokens\) exceeds its \d+ training"),
])
def test_data_errors(tmp_path, u, weights, message):
  dataset(tmp_path / "a", 100, 5)
  dataset(tmp_path / "b", 100, 6)
  with pytest.raises(DataError, match=message):
    build_pipeline(config([tmp_path / "a", tmp_path / "b"], u, weights=weights))


def test_config_validation():
  c = config(["/x"], 0)
  assert problems(c) == []
  c.data.max_unique_tokens = T
  assert problems(c) == [f"data.max_unique_tokens={T} is less than one window of "
                         f"data.seq_len+1 = {T + 1} tokens"]
  c.data.max_unique_tokens = -1
  assert problems(c) == ["data.max_unique_tokens=-1 must be an integer >= 0 (0 = all the data)"]


def test_workdirs_from_before_the_field_still_resume():
  from slmjax.train.run_files import config_conflicts

  assert config_conflicts({"data": {"seq_len": 8}}, {"data": {"seq_len": 8, "max_unique_tokens": 0}}) == []
  assert config_conflicts({"data": {}}, {"data": {"max_unique_tokens": 99}}) == [
      "data.max_unique_tokens: 0 in the workdir vs 99 now"]


def test_run_json_reports_u_and_epochs(tmp_path):
  from slmjax.train.loop import train

  dataset(tmp_path / "a", 200, 7)
  c = config([tmp_path / "a"], 257)
  c.model.dim, c.model.n_layers, c.model.n_heads, c.model.multiple_of = 32, 1, 1, 32
  c.train.steps, c.train.eval_every, c.train.eval_batches = 4, 4, 1
  c.train.log_every, c.train.progress, c.checkpoint.every_steps = 1, False, 0
  c.train.warmup_min = 1
  run = train(c, str(tmp_path / "run"))
  info = json.load(open(tmp_path / "run" / "run.json"))
  assert info["status"] == "completed" and run["status"] == "completed"
  assert info["tokens"] == 4 * 8 * T == 512
  assert info["trained_tokens"] == 512   # windows hold no padding
  assert info["unique_tokens"] == 257 and info["epochs"] == pytest.approx(512 / 257)
  assert info["data"]["datasets"][0]["unique_tokens"] == 257


def test_sweep_expands_and_dry_runs_a_restricted_multi_epoch_run(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  out = subprocess.run(
      [sys.executable, "-m", "slmjax.launch.cli", "--config=configs/sweeps/cpu_mini.py",
       f"--root={tmp_path}", "--dry_run", "--config.multi_epoch.unique_tokens=20000",
       "--only=_u2.0e4$"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  cmds = [l for l in out.stdout.splitlines() if "--workdir=" in l]
  assert len(cmds) == 2
  for line in cmds:
    key = re.search(r"--workdir=\S+/(\S+)", line).group(1)
    assert key in ("m30k_d4.0e4_u2.0e4", "m30k_d8.0e4_u2.0e4"), key
    assert "--config.data.max_unique_tokens=20000" in line
    assert f"--config.train.tokens={key[6]}0000" in line
  # The trainer accepts the command the sweep wrote (validation of the config, no data read).
  args = re.findall(r"--config[.=]\S+", cmds[0])
  check = subprocess.run([sys.executable, "-m", "slmjax.train.cli", *args, "--dry_run"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert check.returncode == 0, check.stderr[-2000:]


def test_a_packed_mixture_splits_u_so_every_dataset_runs_the_same_epochs(tmp_path):
  # Packed rows hold one 9-token utterance of a (7 slots padding) but four 4-token ones of b.
  # U split by rows alone (2000/2000) ran b 1.78x as many epochs as a (counted over 200 steps:
  # 3.60 vs 6.40); split by the tokens each dataset's rows hold (1441/2559), 5.0 and 5.0.
  eos = VOCAB - 2
  for name, n, length in (("a", 400, 9), ("b", 1200, 4)):
    utts = [np.append(np.arange(length - 1) % eos, eos) for _ in range(n)]
    write_unit_dataset(str(tmp_path / name), {"train": utts, "test": utts[:4]}, vocab_size=VOCAB,
                       n_shards=2)
  pipe = build_pipeline(config([tmp_path / "a", tmp_path / "b"], 4000, mode="packed",
                               weights="1,1"))
  assert list(pipe.counts) == [4, 4] and pipe.unique_tokens == 4000
  shares = [s.split.n_tokens for s in pipe.train.streams]
  it, trained = pipe.train_iter(), np.zeros(2)
  for _ in range(200):
    w = next(it)["weights"]
    trained += [w[:4].sum(), w[4:].sum()]
  passes = trained / shares                    # counted: each dataset's tokens over its share
  assert passes[0] == pytest.approx(passes[1], rel=0.02), (shares, passes)
  e = pipe.epochs(200)
  assert e["a"] == pytest.approx(e["b"], rel=0.02)
  assert pipe.total_epochs(200) == pytest.approx(trained.sum() / 4000, rel=0.01)
  assert pipe.trained_tokens(200) == trained.sum()   # exact, both datasets of the mixture
