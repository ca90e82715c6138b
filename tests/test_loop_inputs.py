"""Bad inputs and failures of a run: each one clear line, nothing of an existing run overwritten."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from run_helpers import ROOT, TINY
from slmjax.data import DataError, splits
from slmjax.data.testing import random_utterances, write_unit_dataset
from slmjax.train import loop
from slmjax.train.checkpoint import list_steps, restore_params
from slmjax.train.run_files import RunError, config_conflicts


def _config(**overrides):
  import importlib.util
  spec = importlib.util.spec_from_file_location("train_config",
                                                os.path.join(ROOT, "configs", "train.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config("tiny")
  flat = dict(TINY, **{"train.steps": 10, "checkpoint.every_steps": 4, "train.eval_every": 4})
  flat.update({k.replace("__", "."): v for k, v in overrides.items()})
  for k, v in flat.items():
    node = cfg
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return cfg


def _snapshot(wd):
  out = {}
  for root, _, files in os.walk(wd):
    for f in files:
      p = os.path.join(root, f)
      out[p] = open(p, "rb").read()
  return out


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
  """A run whose loss turns NaN at step 8 (a checkpoint step); also records a profiler trace."""
  wd = str(tmp_path_factory.mktemp("nan") / "run")
  real = loop.make_train_step

  def poisoned(config, mesh):
    step = real(config, mesh)

    def wrapped(state, batch):
      s = int(state["step"])
      state, m = step(state, batch)
      if s + 1 >= 8:
        m = dict(m, loss=m["loss"] * np.nan)
      return state, m
    return wrapped

  loop.make_train_step = poisoned
  try:
    with pytest.raises(RunError) as e:
      loop.train(_config(train__profile_start=2, train__profile_steps=2), wd)
  finally:
    loop.make_train_step = real
  return wd, str(e.value)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(diverged):
  wd, msg = diverged
  assert "non-finite training loss at step 8" in msg and "\n" not in msg
  assert list_steps(wd) == [4]                         # step 8 was never saved
  info = json.load(open(os.path.join(wd, "run.json")))
  assert info["status"] == "failed" and "non-finite" in info["error"]
  _, params, step = restore_params(wd)
  assert step == 4 and all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
  assert os.listdir(os.path.join(wd, "profile"))      # the requested trace was written


def test_conflicting_config_is_refused_naming_fields(diverged):
  wd, _ = diverged
  before = _snapshot(wd)
  with pytest.raises(RunError) as e:
    loop.train(_config(train__lr=1e-3, data__seq_len=16), wd)
  msg = str(e.value)
  assert "\n" not in msg and "train.lr" in msg and "data.seq_len" in msg
  assert _snapshot(wd) == before
  # Fields that do not change the math may differ between launches.
  old = json.load(open(os.path.join(wd, "config.json")))
  new = json.loads(json.dumps(old))
  new["train"]["log_every"] = 7
  new["mesh"]["fsdp"] = 4
  new["checkpoint"]["keep"] = 9
  assert config_conflicts(old, new) == []
  new["train"]["batch_size"] = 4
  assert [c.split(":")[0] for c in config_conflicts(old, new)] == ["train.batch_size"]


@pytest.mark.parametrize("name,text,expected", [
    ("config.json", '{"model": ', "config.json is unreadable, not valid JSON"),
    ("run.json", '{"status": "runn', "run.json is unreadable, not valid JSON"),
    ("run.json", "[]", "run.json is unreadable, a JSON list instead of an object"),
])
def test_a_corrupt_run_file_is_named_and_the_run_left_untouched(diverged, tmp_path, name, text,
                                                                 expected):
  wd = str(tmp_path / "run")
  shutil.copytree(diverged[0], wd)
  with open(os.path.join(wd, name), "w") as f:
    f.write(text)
  before = _snapshot(wd)
  with pytest.raises(RunError) as e:
    loop.train(_config(), wd)
  assert expected in str(e.value) and "\n" not in str(e.value) and "repair it" in str(e.value)
  assert _snapshot(wd) == before


def test_a_config_json_that_cannot_be_read_is_named(tmp_path):
  wd = tmp_path / "run"
  (wd / "config.json").mkdir(parents=True)
  with pytest.raises(RunError) as e:
    loop.train(_config(), str(wd))
  msg = str(e.value)
  assert "config.json cannot be read" in msg and "repair it" in msg and "\n" not in msg
  assert sorted(os.listdir(wd)) == ["config.json"]


def test_a_resume_inside_the_trace_window_trains_on_without_a_trace(diverged, tmp_path, capfd):
  """The checkpoint is at step 4; a trace of steps 3..6 was never started in this launch, so the
  loop must neither start it late nor stop a trace that is not running."""
  wd = str(tmp_path / "run")
  shutil.copytree(diverged[0], wd)
  shutil.rmtree(os.path.join(wd, "profile"))
  info = loop.train(_config(train__profile_start=3, train__profile_steps=4), wd)
  assert info["status"] == "completed" and list_steps(wd)[-1] == 10
  assert "profile_start=3 is at or before the resumed step 4" in capfd.readouterr().err
  assert not os.path.exists(os.path.join(wd, "profile"))


@pytest.fixture()
def unit_dataset(tmp_path, monkeypatch):
  monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
  rng = np.random.default_rng(0)
  path = str(tmp_path / "units")
  write_unit_dataset(path, {"train": random_utterances(300, 34, rng),
                            "test": random_utterances(30, 34, rng)}, vocab_size=34)
  return path


def test_bad_data_leaves_an_existing_run_untouched(diverged, unit_dataset, tmp_path):
  wd, _ = diverged
  before = _snapshot(wd)
  cases = {
      "not found": dict(data__kind="units", data__path=str(tmp_path / "missing")),
      "vocab_size 34 does not match config.model.vocab_size 502":
          dict(data__kind="units", data__path=unit_dataset, model__vocab_size=502),
  }
  shard = os.path.join(unit_dataset, "train-00000-of-00002.array_record")
  for expected, overrides in cases.items():
    with pytest.raises(DataError) as e:
      loop.train(_config(**overrides), wd)
    assert expected in str(e.value) and "\n" not in str(e.value)
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) - 100)
  with pytest.raises(DataError) as e:
    loop.train(_config(data__kind="units", data__path=unit_dataset), wd)
  assert "train-00000-of-00002.array_record" in str(e.value) and "\n" not in str(e.value)
  assert _snapshot(wd) == before
  fresh = str(tmp_path / "fresh")
  with pytest.raises(DataError):
    loop.train(_config(data__kind="units", data__path=unit_dataset), fresh)
  assert not os.path.exists(fresh)


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=8")
  return subprocess.run([sys.executable, "-m", "slmjax.train.cli",
                         f"--config={os.path.join(ROOT, 'configs', 'train.py')}:tiny", *args],
                        env=env, capture_output=True, text=True, timeout=300)


def test_a_restore_that_raises_closes_what_the_launch_opened(tmp_path, monkeypatch):
  """The checkpoint manager and the data iterator are closed, and run.json records the
  failure, when the restore itself raises (they were closed only around the training loop)."""
  closed = []
  real_close = loop.RunCheckpoints.close

  def failing_restore(self, abstract_state, data_iter):
    raise RunError("no checkpoint of this run restores (a test)")

  monkeypatch.setattr(loop.RunCheckpoints, "restore_latest", failing_restore)
  monkeypatch.setattr(loop.RunCheckpoints, "close",
                      lambda self: (closed.append("checkpoints"), real_close(self)))
  real_iter_close = loop._close
  monkeypatch.setattr(loop, "_close", lambda it: (closed.append("data"), real_iter_close(it)))
  wd = str(tmp_path / "run")
  with pytest.raises(RunError, match="a test"):
    loop.train(_config(), wd)
  assert closed == ["checkpoints", "data"]
  info = json.load(open(os.path.join(wd, "run.json")))
  assert info["status"] == "failed" and "a test" in info["error"], info


def test_cli_config_typo_is_one_line(tmp_path):
  wd = str(tmp_path / "run")
  p = _cli(f"--workdir={wd}", "--config.train.stpes=5")
  assert p.returncode != 0 and "stpes" in p.stderr and "Traceback" not in p.stderr, p.stderr
  assert len(p.stderr.strip().splitlines()) == 1
  assert not os.path.exists(wd)


def test_cli_workdir_that_is_a_file_is_one_line(tmp_path):
  path = tmp_path / "notes.txt"
  path.write_text("keep me")
  p = _cli(f"--workdir={path}")
  assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
  assert p.stderr.strip().splitlines() == [
      f"slmjax-train: workdir {path} is an existing file, not a directory; pass a directory"]
  assert path.read_text() == "keep me"


def test_cli_missing_dataset_is_one_line(tmp_path):
  wd = str(tmp_path / "run")
  p = _cli(f"--workdir={wd}", "--config.data.kind=units", f"--config.data.path={tmp_path}/nope")
  assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
  assert "not found" in p.stderr.strip().splitlines()[-1]
  assert not os.path.exists(wd)


def test_packed_mixture_run_reports_test_loss_per_dataset(unit_dataset, tmp_path, capsys):
  """Two unit datasets (one marked synthetic, i.e. TTS) in packed mode: the eval rows carry a
  test loss per dataset, and `test_loss` is the natural-speech one alone."""
  rng = np.random.default_rng(3)
  tts = str(tmp_path / "tts")
  write_unit_dataset(tts, {"train": random_utterances(200, 34, rng, mean_len=10),
                           "test": random_utterances(20, 34, rng, mean_len=10)},
                     vocab_size=34, synthetic=True)
  wd = str(tmp_path / "run")
  info = loop.train(_config(data__kind="units", data__path=f"{unit_dataset},{tts}",
                            data__weights="3,1", data__mode="packed", train__steps=4,
                            train__eval_every=4), wd)
  names = [d["name"] for d in info["data"]["datasets"]]
  assert names == ["units", "tts"] and [d["rows_per_batch"] for d in info["data"]["datasets"]] \
      == [6, 2]
  assert ("slmjax-train: data mixture, rows of each 8-row batch: units 6 (weight 0.750), tts 2 "
          "(weight 0.250)") in capsys.readouterr().err
  ev = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl")) if "test_loss" in l]
  assert len(ev) == 1 and ev[0]["step"] == 4
  assert ev[0]["test_loss"] == ev[0]["test_loss/units"] != ev[0]["test_loss/tts"]
  assert info["test_loss_by_dataset"] == {"units": ev[0]["test_loss/units"],
                                          "tts": ev[0]["test_loss/tts"]}
  assert info["status"] == "completed" and info["final_test_loss"] == ev[0]["test_loss"]
  # Epochs count utterance tokens, not the rows' padding: each dataset's passes weighted by its U.
  per = {d["name"]: d["unique_tokens"] for d in info["data"]["datasets"]}
  passes = sum(info["epochs_by_dataset"][n] * u for n, u in per.items()) / sum(per.values())
  assert info["epochs"] == pytest.approx(passes, rel=0.02)
  assert info["epochs"] < 0.97 * info["tokens"] / info["unique_tokens"]
  # trained_tokens (the sweep's D of a packed run): those utterance tokens, counted exactly.
  assert info["trained_tokens"] == pytest.approx(info["epochs"] * info["unique_tokens"], rel=0.02)
  assert info["trained_tokens"] < 0.97 * info["tokens"]
  assert json.load(open(os.path.join(wd, "run.json")))["trained_tokens"] == info["trained_tokens"]


def test_a_packed_run_begun_on_the_earlier_rows_is_not_resumed_on_these(unit_dataset, tmp_path):
  """Packed rows now begin each utterance with an EOS; a packed run whose checkpoints were trained
  on the earlier rows (run.json's data has no packed_rows) would change its data mid-run."""
  wd = str(tmp_path / "run")
  cfg = _config(data__kind="units", data__path=unit_dataset, data__mode="packed", train__steps=8,
                checkpoint__every_steps=4, train__eval_every=8)
  loop.train(cfg, wd)
  run_json = os.path.join(wd, "run.json")
  run = json.load(open(run_json))
  assert run["data"]["packed_rows"] == "eos_first" and list_steps(wd)[-1] == 8
  # as a run packed before the change left it: stopped after step 4, no packed_rows recorded
  shutil.rmtree(os.path.join(wd, "checkpoints", "8"))
  for k in ("packed_rows",):
    del run["data"][k]
  for k in ("final_test_loss", "status"):
    run.pop(k, None)
  json.dump(run, open(run_json, "w"))
  before = _snapshot(wd)
  with pytest.raises(RunError, match=r"was trained on packed rows of an earlier slmjax .* train it "
                                     r"again in a new workdir"):
    loop.train(cfg, wd)
  assert _snapshot(wd) == before  # refused before the restore or run.json changed anything
  # the same run with its layout recorded resumes
  run["data"]["packed_rows"] = "eos_first"
  json.dump(run, open(run_json, "w"))
  assert loop.train(cfg, wd)["status"] == "completed"


def test_a_run_is_not_resumed_on_a_unit_dataset_rewritten_since_it_began(unit_dataset, tmp_path,
                                                                         monkeypatch):
  """The unit dataset at data.path was encoded again (other audio, another tokenizer) after the
  run's last checkpoint: the config is the same, but resuming would train the rest of the run on
  other data. The relaunch stops with one line naming what changed; the run is left as it was."""
  wd = str(tmp_path / "run")
  cfg = _config(data__kind="units", data__path=unit_dataset, train__steps=8,
                checkpoint__every_steps=4, train__eval_every=8)
  loop.train(cfg, wd)
  run_json = os.path.join(wd, "run.json")
  run = json.load(open(run_json))
  # as a run stopped after step 4 left it
  shutil.rmtree(os.path.join(wd, "checkpoints", "8"))
  for k in ("final_test_loss", "status"):
    run.pop(k, None)
  json.dump(run, open(run_json, "w"))
  before = _snapshot(wd)
  shutil.rmtree(unit_dataset)
  rng = np.random.default_rng(1)
  write_unit_dataset(unit_dataset, {"train": random_utterances(400, 34, rng),
                                    "test": random_utterances(30, 34, rng)}, vocab_size=34)
  # the relaunch is a new process: no reader of the old shards is open
  monkeypatch.setattr(splits, "READERS", splits.ReaderPool(8))
  with pytest.raises(RunError) as e:
    loop.train(cfg, wd)
  msg = str(e.value)
  assert "\n" not in msg and "train_tokens" in msg and "changed since" in msg, msg
  assert _snapshot(wd) == before


def test_a_run_resumes_on_its_unit_dataset_moved_to_another_folder(unit_dataset, tmp_path):
  """The dataset moved (a new mount) between launches: the relaunch with the new data.path
  resumes and ends as an uninterrupted run, its counts checked instead of the path's text."""
  ref, wd = str(tmp_path / "ref"), str(tmp_path / "run")
  cfg = dict(data__kind="units", train__steps=8, checkpoint__every_steps=4, train__eval_every=4)
  loop.train(_config(data__path=unit_dataset, **cfg), ref)
  loop.train(_config(data__path=unit_dataset, **{**cfg, "train__steps": 8}), wd)
  run_json = os.path.join(wd, "run.json")
  run = json.load(open(run_json))
  shutil.rmtree(os.path.join(wd, "checkpoints", "8"))   # as a run stopped after step 4 left it
  for k in ("final_test_loss", "status"):
    run.pop(k, None)
  json.dump(run, open(run_json, "w"))
  moved = str(tmp_path / "new_mount" / "units")
  os.makedirs(os.path.dirname(moved))
  shutil.move(unit_dataset, moved)
  info = loop.train(_config(data__path=moved, **cfg), wd)
  assert info["status"] == "completed" and info["resumed_from"] == 4
  assert info["final_test_loss"] == json.load(open(os.path.join(ref, "run.json")))["final_test_loss"]
  # the number of datasets is still the config's; and only an unfinished run's data may move:
  # a finished run's record (and a sweep's check of it) is its own data's
  old = {"data": {"path": "/a/units"}}
  assert config_conflicts(old, {"data": {"path": "/mnt/b/units "}}, data_may_move=True) == []
  assert [c.split(":")[0] for c in config_conflicts(old, {"data": {"path": "/a/units,/a/more"}},
                                                    data_may_move=True)] == ["data.path"]
  assert [c.split(":")[0] for c in config_conflicts(old, {"data": {"path": "/mnt/b/units"}})] \
      == ["data.path"]
  shutil.move(moved, unit_dataset)   # moved again: the finished run is not relabelled
  with pytest.raises(RunError, match=r"holds a run with another config \(data.path: "):
    loop.train(_config(data__path=unit_dataset, **cfg), wd)


def test_the_mfu_peak_may_change_between_launches():
  """train.peak_flops only scales the MFU figures (metrics.jsonl, run.json): setting it on a
  relaunch (the device table lacked the accelerator) must not force the run to start over."""
  from slmjax.train.run_files import config_dict  # pylint: disable=g-import-not-at-top
  old = config_dict(_config())
  new = json.loads(json.dumps(old))
  new["train"]["peak_flops"] = 9.89e14
  assert config_conflicts(old, new) == []


def test_a_relaunch_that_resolves_model_dtype_auto_otherwise_is_refused(diverged, tmp_path):
  """model.dtype=auto is float32 on CPU, bfloat16 on GPU/TPU: a run begun on a GPU and relaunched
  on a CPU would go on in another dtype under the same config. run.json records the resolved
  dtype; a relaunch resolving to another is refused in one line, and an explicit model.dtype equal
  to the recorded one is accepted."""
  from slmjax.train.run_files import claim_workdir, config_dict  # pylint: disable=g-import-not-at-top
  wd = str(tmp_path / "run")
  shutil.copytree(diverged[0], wd)
  run_json = os.path.join(wd, "run.json")
  run = json.load(open(run_json))
  assert run["compute_dtype"] == "float32"              # model.dtype=auto on this CPU
  run["compute_dtype"] = "bfloat16"                      # as a GPU launch records it
  json.dump(run, open(run_json, "w"))
  before = _snapshot(wd)
  with pytest.raises(RunError) as e:
    loop.train(_config(), wd)
  msg = str(e.value)
  assert "\n" not in msg and "bfloat16" in msg and "--config.model.dtype=bfloat16" in msg, msg
  assert _snapshot(wd) == before
  assert claim_workdir(wd, _config(model__dtype="bfloat16"), write=False)  # explicit: accepted
  with pytest.raises(RunError, match="model.dtype"):
    claim_workdir(wd, _config(model__dtype="float32"), write=False)
  old = config_dict(_config())
  assert config_conflicts(old, config_dict(_config(model__dtype="bfloat16")), "bfloat16") == []
  del run["compute_dtype"]                               # a run.json from before the field
  json.dump(run, open(run_json, "w"))
  assert claim_workdir(wd, _config(), write=False)


def test_train_tokens_may_change_while_the_steps_stay_the_same():
  """With train.steps > 0 train.tokens has no effect: another value on a relaunch is no
  conflict. A change of train.tokens that changes the number of updates still is one."""
  from slmjax.train.run_files import config_dict  # pylint: disable=g-import-not-at-top
  old = config_dict(_config(train__steps=10, train__tokens=1000))
  assert config_conflicts(old, config_dict(_config(train__steps=10, train__tokens=5000))) == []
  assert config_conflicts(old, config_dict(_config(train__steps=10, train__tokens=0))) == []
  assert [c.split(":")[0] for c in config_conflicts(
      old, config_dict(_config(train__steps=12, train__tokens=5000)))] == [
          "train.steps", "train.tokens"]
  # derived from train.tokens (steps 0): the updates are ceil(tokens / (batch_size * seq_len))
  bt = int(old["train"]["batch_size"]) * int(old["data"]["seq_len"])
  old = config_dict(_config(train__steps=0, train__tokens=10 * bt))
  assert config_conflicts(old, config_dict(_config(train__steps=0, train__tokens=10 * bt - 1))) == []
  assert [c.split(":")[0] for c in config_conflicts(
      old, config_dict(_config(train__steps=0, train__tokens=10 * bt + 1)))] == ["train.tokens"]
  assert [c.split(":")[0] for c in config_conflicts(
      old, config_dict(_config(train__steps=10, train__tokens=10 * bt)))] == ["train.steps"]
