"""Unit datasets read through Grain: windows, packing, per-process sharding, mixtures, restore.

References are written in the tests with plain Python/NumPy over the utterance lists that were
written to disk (never through the reader under test).
"""

import collections
import os

import grain
import ml_collections
import numpy as np
import pytest

from slmjax.data import build_pipeline, mixture_line
from slmjax.data.testing import random_utterances, write_unit_dataset

V, T = 20, 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  mp = pytest.MonkeyPatch()
  mp.setenv("SLMJAX_CACHE", str(tmp_path_factory.mktemp("cache")))
  rng = np.random.default_rng(0)
  path = str(tmp_path_factory.mktemp("ds"))
  splits = {"train": random_utterances(150, V, rng, mean_len=12),
            "test": random_utterances(15, V, rng, mean_len=12)}
  # A few long utterances so packing must cut them into pieces.
  splits["train"][3] = np.append(rng.integers(0, V - 2, 40), V - 2)
  write_unit_dataset(path, splits, vocab_size=V, n_shards=3)
  yield path, splits
  mp.undo()


def _config(path, mode="windows", batch=4, seed=1):
  return ml_collections.ConfigDict(dict(
      seed=seed, model=dict(vocab_size=V),
      data=dict(kind="units", path=path, mode=mode, seq_len=T, weights=None),
      train=dict(batch_size=batch)))


def _shard_streams(utts, n_shards=3):
  b = np.linspace(0, len(utts), n_shards + 1).astype(int)
  return [np.concatenate(utts[b[i]:b[i + 1]]) for i in range(n_shards)]


def test_windows_are_consecutive_stream_tokens_covering_each_epoch_once(dataset):
  path, splits = dataset
  p = build_pipeline(_config(path))
  stream = p.train.streams[0]
  n = stream.examples_per_epoch
  shards = _shard_streams(splits["train"])
  # Reference: every window is T+1 consecutive tokens of one shard stream; in one epoch the
  # windows of a shard tile a contiguous stretch of it with stride T.
  ex = stream.get(np.arange(n))
  window = np.concatenate([ex["inputs"], ex["targets"][:, -1:]], axis=1)
  np.testing.assert_array_equal(ex["inputs"][:, 1:], ex["targets"][:, :-1])
  found = collections.defaultdict(list)
  for w in window:
    hits = [(s, i) for s, st in enumerate(shards) for i in range(len(st) - T)
            if np.array_equal(st[i:i + T + 1], w)]
    assert hits, "window is not a run of consecutive tokens of any shard"
    found[hits[0][0]].append(hits[0][1])
  expected = [(len(st) - 1) // T for st in shards]
  for s, starts in found.items():
    starts = np.sort(starts)
    assert len(starts) == expected[s]
    assert np.all(np.diff(starts) == T)          # each transition once per epoch
    assert starts[0] + expected[s] * T <= len(shards[s]) - 1
  # The next epoch uses another order (and phase), same windows count.
  ex2 = stream.get(np.arange(n, 2 * n))
  assert not np.array_equal(ex2["inputs"], ex["inputs"])


def test_packed_rows_hold_whole_utterances_once_per_epoch(dataset):
  path, splits = dataset
  p = build_pipeline(_config(path, mode="packed"))
  stream = p.train.streams[0]
  ex = stream.get(np.arange(stream.examples_per_epoch))
  assert sorted(_packed_utterances(ex)) == sorted(tuple(u) for u in splits["train"])


def _packed_utterances(ex):
  """The utterances held by packed rows (checked row by row), re-joined from their pieces: an
  utterance's first piece starts with the input EOS (V - 2), and its last target is its EOS."""
  pieces = []
  for r in range(ex["inputs"].shape[0]):
    seg = ex["segment_ids"][r]
    for s in np.unique(seg[seg > 0]):
      m = seg == s
      inp, tgt, w, pos = (ex[k][r][m] for k in ("inputs", "targets", "weights", "positions"))
      np.testing.assert_array_equal(pos, np.arange(m.sum()))
      np.testing.assert_array_equal(tgt[:-1], inp[1:])   # next token inside the segment
      assert np.all(w == 1)
      pieces.append((inp, tgt))
    pad = seg == 0
    assert np.all(ex["weights"][r][pad] == 0) and np.all(ex["inputs"][r][pad] == V - 1)
  # Re-join pieces in order (an utterance's pieces follow each other) and compare the multiset
  # of utterances with what was written.
  rebuilt, cur = [], None
  for inp, tgt in pieces:
    if inp[0] == V - 2:        # EOS occurs inside no utterance: only as an utterance's first input
      assert cur is None, "an utterance started before the previous one ended"
      cur = []
    else:
      assert cur and cur[-1][-1] == inp[0], "a later piece starts with the unit before it"
    cur.append(tgt)
    if tgt[-1] == V - 2:
      rebuilt.append(tuple(np.concatenate(cur)))
      cur = None
  assert cur is None
  return rebuilt


def test_packed_rows_start_each_utterance_after_an_eos_by_hand():
  # Written out by hand: utterances [1 2 3 E] and [4 5 E] (E = EOS = 8, P = pad = 9) in one row
  # of 8 slots, then a 10-token one cut into pieces of 8 and 2. Each utterance is predicted from
  # an EOS as slmjax-eval scores a file ([EOS] + units): the old rows began at u_1 and trained
  # the EOS input nowhere.
  from slmjax.data.examples import PackedStream  # pylint: disable=g-import-not-at-top
  from slmjax.data.splits import MemorySplit  # pylint: disable=g-import-not-at-top
  E, P = 8, 9
  tokens = np.array([1, 2, 3, E, 4, 5, E, 1, 2, 3, 4, 5, 6, 7, 1, 2, E])
  split = MemorySplit("s", tokens, np.array([4, 3, 10]), [0, 3])
  ex = PackedStream(split, 8, 0, P, E, shuffle=False).get(np.arange(3))
  np.testing.assert_array_equal(ex["inputs"], [[E, 1, 2, 3, E, 4, 5, P],
                                               [E, 1, 2, 3, 4, 5, 6, 7],
                                               [1, 2, P, P, P, P, P, P]])
  np.testing.assert_array_equal(ex["targets"], [[1, 2, 3, E, 4, 5, E, P],
                                                [1, 2, 3, 4, 5, 6, 7, 1],
                                                [2, E, P, P, P, P, P, P]])
  np.testing.assert_array_equal(ex["weights"], [[1] * 7 + [0], [1] * 8, [1, 1] + [0] * 6])
  np.testing.assert_array_equal(ex["segment_ids"], [[1, 1, 1, 1, 2, 2, 2, 0], [1] * 8,
                                                    [1, 1] + [0] * 6])
  np.testing.assert_array_equal(ex["positions"], [[0, 1, 2, 3, 0, 1, 2, 0], list(range(8)),
                                                  [0, 1] + [0] * 6])


def test_packed_rows_of_several_epochs_read_at_once(dataset):
  # Epochs pack into different numbers of rows; a read spanning epochs (a batch at an epoch
  # boundary, a process's share of it) must find each row in its own epoch.
  path, splits = dataset
  stream = build_pipeline(_config(path, mode="packed")).train.streams[0]
  rows = [stream._epoch_rows(e) for e in range(4)]  # pylint: disable=protected-access
  assert len(set(rows)) > 1
  got = collections.Counter(_packed_utterances(stream.get(np.arange(sum(rows)))))
  assert got == collections.Counter([tuple(u) for u in splits["train"]] * 4)


def test_two_processes_read_disjoint_halves_of_the_same_global_batches(dataset):
  path, _ = dataset
  cfg = _config(path, batch=6)
  one = build_pipeline(cfg)
  halves = [build_pipeline(cfg, process_index=i, process_count=2) for i in range(2)]
  n = one.train.streams[0].examples_per_epoch
  steps = -(-n // 6)
  seen = []
  for t in range(steps):
    full = one.train[t]
    parts = [h.train[t] for h in halves]
    assert parts[0]["inputs"].shape == (3, T)
    np.testing.assert_array_equal(np.concatenate([q["inputs"] for q in parts]), full["inputs"])
    for q in parts:
      seen.extend(tuple(r) for r in np.concatenate([q["inputs"], q["targets"][:, -1:]], 1))
  # One epoch's windows, each exactly once (the last batch runs into the next epoch).
  epoch = one.train.streams[0].get(np.arange(n))
  want = collections.Counter(tuple(r) for r in np.concatenate(
      [epoch["inputs"], epoch["targets"][:, -1:]], 1))
  got = collections.Counter(seen[:n])
  assert got == want


@pytest.mark.parametrize("mode", ["windows", "packed"])
def test_grain_iterator_restores_to_identical_output(dataset, mode):
  path, _ = dataset
  p = build_pipeline(_config(path, mode=mode))
  ds = p.train.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=3))
  grain.experimental.assert_equal_output_after_checkpoint(
      grain.experimental.LimitIterDataset(ds, count=8))
  # And a fresh pipeline (new process after a restart) continues from a saved state.
  it = p.train_iter()
  for _ in range(5):
    next(it)
  state = it.get_state()
  want = [next(it) for _ in range(3)]
  it2 = build_pipeline(_config(path, mode=mode)).train_iter()
  it2.set_state(state)
  for w in want:
    got = next(it2)
    for k in w:
      np.testing.assert_array_equal(got[k], w[k])


def test_seed_changes_order_and_is_deterministic(dataset):
  path, _ = dataset
  a = build_pipeline(_config(path, seed=1)).train[3]["inputs"]
  b = build_pipeline(_config(path, seed=1)).train[3]["inputs"]
  c = build_pipeline(_config(path, seed=2)).train[3]["inputs"]
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_mixture_rows_follow_weights_and_eval_covers_test_split(dataset, tmp_path):
  path, splits = dataset
  rng = np.random.default_rng(5)
  other = str(tmp_path / "other")
  tts = [np.full(9, 3, np.int64) for _ in range(40)]
  for u in tts:
    u[-1] = V - 2
  write_unit_dataset(other, {"train": tts, "test": tts[:5]}, vocab_size=V, synthetic=True)
  cfg = _config(f"{path},{other}", batch=8)
  cfg.data.weights = "0.75,0.25"
  p = build_pipeline(cfg)
  assert list(p.counts) == [6, 2]
  b = p.train[0]["inputs"]
  assert np.all(b[6:] == np.where(b[6:] == V - 2, V - 2, 3))   # rows 6..7 from the TTS corpus
  assert not np.all(b[:6] == np.where(b[:6] == V - 2, V - 2, 3))
  assert [e.synthetic for e in p.evals] == [False, True]
  # Evaluation windows: every transition of the test stream once, padding rows weigh 0.
  ev = p.evals[0]
  w = sum(float(x["weights"].sum()) for x in ev.batches(8))
  assert w == sum(len(u) for u in splits["test"]) - 1


def test_mixture_weights_rounded_to_rows_are_reported(dataset, tmp_path):
  """data.weights 0.7,0.3 on 8 rows: 5.6 and 2.4 rows, rounded to 6 and 2. run.json's data info
  keeps the weights asked for beside the rows they became, and the trainer's one line names both."""
  path, _ = dataset
  other = str(tmp_path / "other")
  utt = np.array([3] * 8 + [V - 2], np.int64)   # utterances end in EOS
  write_unit_dataset(other, {"train": [utt] * 40, "test": [utt] * 5}, vocab_size=V)
  cfg = _config(f"{path},{other}", batch=8)
  cfg.data.weights = "7,3"
  p = build_pipeline(cfg)
  rows = p.info()["datasets"]
  assert [(r["rows_per_batch"], r["weight"]) for r in rows] == [(6, 0.7), (2, 0.3)]
  names = [r["name"] for r in rows]
  assert mixture_line(p.info()) == (f"data mixture, rows of each 8-row batch: {names[0]} 6 (weight 0.700), "
                              f"{names[1]} 2 (weight 0.300)")
  assert mixture_line(build_pipeline(_config(path, batch=8)).info()) is None   # one dataset: no line


def _train_only_dataset(tmp_path, monkeypatch, n, n_shards):
  """(path, utterances) of a dataset of `n` short utterances with no test split."""
  monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
  utts = random_utterances(n, V, np.random.default_rng(2), mean_len=6)
  path = str(tmp_path / "ds")
  write_unit_dataset(path, {"train": utts}, vocab_size=V, n_shards=n_shards)
  return path, utts


def test_dataset_without_test_split_holds_out_one_percent(tmp_path, monkeypatch):
  path, utts = _train_only_dataset(tmp_path, monkeypatch, 400, n_shards=3)
  p = build_pipeline(_config(path, mode="packed"))
  train, test = p.datasets[0].splits["train"], p.datasets[0].splits["test"]
  assert test.n_records == 4 and train.n_records == 396
  # Held-out utterances never appear in training; together they are the whole split.
  ev = test.read_spans(test.starts[:-1], test.lengths)
  tr = train.read_spans(train.starts[:-1], train.lengths)
  held = np.split(ev, np.cumsum(test.lengths)[:-1])
  kept = np.split(tr, np.cumsum(train.lengths)[:-1])
  assert sorted(map(tuple, held + kept)) == sorted(map(tuple, utts))
  # Which ones is part of every run's identity, pinned: the 4 smallest keys of PCG64(0x7e57)'s raw
  # stream (stable across NumPy releases; Generator.choice picked 4 others and may change).
  assert [tuple(u) for u in held] == [tuple(utts[i]) for i in (75, 215, 231, 247)]
  stream = p.train.streams[0]
  seen = stream.get(np.arange(stream.examples_per_epoch))["inputs"]
  assert np.sum(seen != V - 1) == train.n_tokens
  # The same utterances are held out by every run (independent of the run seed).
  q = build_pipeline(_config(path, mode="packed", seed=9))
  np.testing.assert_array_equal(q.datasets[0].splits["test"].lengths, test.lengths)


@pytest.mark.parametrize("mode", ["windows", "packed"])
def test_reader_threads_share_a_stream_across_many_epochs(mode):
  # A small dataset of a mixture runs through an epoch every few batches, so Grain's reader
  # threads ask one stream for several epochs at once; each must get what one thread would.
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from slmjax.data.examples import make_stream  # pylint: disable=g-import-not-at-top
  from slmjax.data.splits import MemorySplit  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  lens = rng.integers(2, 6, 6)
  split = MemorySplit("small", rng.integers(0, V - 2, lens.sum()), lens, [0, 3, 6])
  steps, rows = 200, 12
  want = make_stream(split, mode, 4, 2, V - 1, V - 2).get(np.arange(steps * rows))
  interval = sys.getswitchinterval()
  sys.setswitchinterval(1e-6)   # threads switch every few bytecodes: races show at once
  try:
    for _ in range(6):
      stream = make_stream(split, mode, 4, 2, V - 1, V - 2)
      with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda t: stream.get(t * rows + np.arange(rows)), range(steps)))
      for k in want:
        np.testing.assert_array_equal(np.concatenate([g[k] for g in got]), want[k])
  finally:
    sys.setswitchinterval(interval)


@pytest.mark.parametrize("mode", ["windows", "packed"])
def test_mixture_resumes_and_splits_across_epoch_boundaries(dataset, tmp_path, mode):
  # A small second dataset passes several epoch boundaries in the batches read here: a fresh
  # iterator set to step k continues exactly, and two processes' rows make the same batches.
  path, _ = dataset
  rng = np.random.default_rng(7)
  small = str(tmp_path / "small")
  write_unit_dataset(small, {"train": random_utterances(12, V, rng, mean_len=12),
                             "test": random_utterances(4, V, rng, mean_len=12)}, vocab_size=V)
  cfg = _config(f"{path},{small}", mode=mode, batch=6)
  cfg.data.update(weights="1,1", num_threads=2, prefetch=3)
  p = build_pipeline(cfg)
  assert p.epochs(30)["small"] > 4
  it = p.train_iter()
  want = [next(it) for _ in range(30)]
  it2 = build_pipeline(cfg).train_iter()
  it2.set_state({"next_index": 11})
  for t in range(11, 30):
    got = next(it2)
    for k in want[t]:
      np.testing.assert_array_equal(got[k], want[t][k])
  halves = [build_pipeline(cfg, process_index=i, process_count=2).train for i in range(2)]
  for t in range(30):
    for k in want[t]:
      np.testing.assert_array_equal(np.concatenate([h[t][k] for h in halves]), want[t][k])


def test_limited_evaluations_read_examples_from_the_whole_split(tmp_path, monkeypatch):
  # train.eval_batches limits the periodic evaluations: their rows used to be the split's first
  # ones, all from its first shard. Shard k's utterances here are all unit k + 1.
  monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
  test = [np.array([k + 1] * 8 + [V - 2]) for k in range(3) for _ in range(20)]
  path = str(tmp_path / "ds")
  write_unit_dataset(path, {"train": test, "test": test}, vocab_size=V, n_shards=3)
  ev = build_pipeline(_config(path)).evals[0]
  assert ev.n_examples > 3 * 8                  # several batches of 4 in each shard
  rows = [x for x in ev.batches(4, max_batches=2)]
  assert len(rows) == 2
  units = {int(u) for x in rows for u in x["inputs"][x["weights"] > 0].ravel()} - {V - 2}
  assert units == {1, 2, 3}
  # The same rows every time, and over two processes the same rows split in two.
  again = [x["inputs"] for x in ev.batches(4, max_batches=2)]
  assert all(np.array_equal(a, x["inputs"]) for a, x in zip(again, rows))
  halves = [list(ev.batches(4, p, 2, max_batches=2)) for p in (0, 1)]
  for b, x in enumerate(rows):
    np.testing.assert_array_equal(
        np.concatenate([halves[0][b]["inputs"], halves[1][b]["inputs"]]), x["inputs"])
  # Unlimited: every example once, in order, as before.
  assert sum(x["inputs"].shape[0] for x in ev.batches(4)) >= ev.n_examples


def _scored_transitions(ev, batch=4):
  """(input, target) token pairs an evaluation scores, in order (rows of weight > 0)."""
  pairs = [np.stack([x["inputs"][x["weights"] > 0], x["targets"][x["weights"] > 0]], 1)
           for x in ev.batches(batch)]
  return np.concatenate(pairs)


def _transitions(stream):
  return np.stack([stream[:-1], stream[1:]], 1)


def test_evaluation_scores_every_transition_of_a_sharded_test_split_once(tmp_path, monkeypatch):
  # The test split is one stream (records in shard order), as slmjax-eval's held-out loss reads
  # it: windows used to stop at shard ends, leaving out each shard's slack and the stream's tail.
  monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
  rng = np.random.default_rng(11)
  test = random_utterances(30, V, rng, mean_len=9)
  path = str(tmp_path / "ds")
  write_unit_dataset(path, {"train": random_utterances(60, V, rng), "test": test},
                     vocab_size=V, n_shards=5)
  ev = build_pipeline(_config(path)).evals[0]
  np.testing.assert_array_equal(_scored_transitions(ev), _transitions(np.concatenate(test)))


def test_held_out_evaluation_spans_shards(tmp_path, monkeypatch):
  # 1% of a dataset spread over 8 shards is about one utterance per shard, shorter than a window:
  # cut per shard, the held-out set gave one window of the 39 transitions it holds.
  path, utts = _train_only_dataset(tmp_path, monkeypatch, 800, n_shards=8)
  ev = build_pipeline(_config(path)).evals[0]
  # The held-out rule (README): the 8 records with the smallest keys of PCG64(0x7e57)'s raw stream.
  held = np.sort(np.argsort(np.random.PCG64(0x7e57).random_raw(800), kind="stable")[:8])
  stream = np.concatenate([utts[i] for i in held])
  np.testing.assert_array_equal(_scored_transitions(ev), _transitions(stream))


_READ_ALL_UNDER_FD_LIMIT = """
import resource, sys
import ml_collections, numpy as np
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from slmjax.data import build_pipeline
cfg = ml_collections.ConfigDict(dict(
    seed=0, model=dict(vocab_size=%d), train=dict(batch_size=8),
    data=dict(kind="units", path=sys.argv[1], mode="packed", seq_len=%d, num_threads=3, prefetch=3)))
p = build_pipeline(cfg)
it = p.train_iter()
n = p.train.streams[0].examples_per_epoch
rows = np.concatenate([next(it)["inputs"] for _ in range(-(-n // 8))])[:n]
print(np.bincount(rows.ravel(), minlength=%d).tolist())
"""


def test_more_shards_than_the_open_file_limit(tmp_path):
  # A reader per shard stayed open for good: a dataset of more shards than the process may open
  # files failed mid-run with an IndexError from a reader that could not open its file.
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(4)
  utts = random_utterances(300, V, rng, mean_len=5)
  path = str(tmp_path / "ds")
  write_unit_dataset(path, {"train": utts, "test": utts[:3]}, vocab_size=V, n_shards=150)
  env = dict(os.environ, SLMJAX_CACHE=str(tmp_path / "cache"))
  out = subprocess.run([sys.executable, "-c", _READ_ALL_UNDER_FD_LIMIT % (V, T, V), path],
                       capture_output=True, text=True, env=env, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  # One packed epoch holds every token once, and padding (V - 1) fills the rest of the rows.
  want = np.bincount(np.concatenate(utts), minlength=V)
  got = np.array(json.loads(out.stdout.splitlines()[-1]))
  np.testing.assert_array_equal(got[:V - 1], want[:V - 1])


def test_reader_threads_share_few_open_readers(dataset, monkeypatch):
  # 16 threads read packed rows while at most 2 shard readers may stay open: readers are closed
  # and reopened under the threads, never while one of them reads.
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  from slmjax.data.splits import READERS  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(READERS, "max_open", 2)
  path, splits = dataset
  stream = build_pipeline(_config(path, mode="packed")).train.streams[0]
  n = stream.examples_per_epoch
  for _ in range(3):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
      got = list(pool.map(lambda i: stream.get(np.array([i])), range(n)))
    ex = {k: np.concatenate([g[k] for g in got]) for k in got[0]}
    assert sorted(_packed_utterances(ex)) == sorted(tuple(u) for u in splits["train"])
  assert len(READERS._open) <= 2  # pylint: disable=protected-access


def test_packed_rows_are_next_fit_over_the_epochs_pieces(dataset):
  # Rows against a plain next-fit written here: a row takes pieces in order while they fit.
  path, _ = dataset
  stream = build_pipeline(_config(path, mode="packed")).train.streams[0]
  for epoch in range(3):
    _, length, _, ptr = stream._plan(epoch)  # pylint: disable=protected-access
    rows, used = [0], 0
    for i, n in enumerate(length.tolist()):
      if used + n > stream.seq_len:
        rows.append(i)
        used = 0
      used += n
    rows.append(len(length))
    assert ptr.tolist() == rows
