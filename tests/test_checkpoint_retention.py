"""Checkpoint retention (latest N plus every M-th), the data item, and restore_params errors."""

import ml_collections
import numpy as np
import pytest
import jax.numpy as jnp

from run_helpers import small_pipeline
from slmjax.train.checkpoint import RunCheckpoints, list_steps, restore_params
from slmjax.train.run_files import RunError


def test_keeps_latest_n_plus_every_mth_and_restores_iterator(tmp_path):
  wd = str(tmp_path)
  ck = RunCheckpoints(wd, ml_collections.ConfigDict(dict(keep=2, keep_every=4,
                                                         async_save=True)))
  pipe = small_pipeline()
  it = pipe.train_iter()
  state = {"step": jnp.zeros((), jnp.int32), "w": jnp.arange(6.0)}
  batches = {}
  for s in range(1, 11):
    next(it)
    state = {"step": jnp.asarray(s, jnp.int32), "w": state["w"] + 1}
    ck.save(s, state, it)
    batches[s] = pipe.train[s]["inputs"]
  ck.close()
  assert list_steps(wd) == [4, 8, 9, 10]
  it2 = small_pipeline().train_iter()
  ck2 = RunCheckpoints(wd, ml_collections.ConfigDict(dict(keep=2, keep_every=4)))
  step, restored = ck2.restore_latest({"step": state["step"], "w": state["w"]}, it2)
  ck2.close()
  assert step == 10 and int(restored["step"]) == 10
  np.testing.assert_array_equal(np.asarray(restored["w"]), np.arange(6.0) + 10)
  np.testing.assert_array_equal(next(it2)["inputs"], batches[10])   # the batch of step 11


def test_restore_params_errors_are_one_line(tmp_path):
  with pytest.raises(RunError, match="not a run workdir"):
    restore_params(str(tmp_path))


def test_iterator_state_falls_back_to_the_step_when_unusable(tmp_path):
  """E.g. a relaunch with another number of processes: the per-process Grain file is absent."""
  import os
  import shutil
  wd = str(tmp_path)
  pipe = small_pipeline()
  it = pipe.train_iter()
  for _ in range(3):
    next(it)
  ck = RunCheckpoints(wd, ml_collections.ConfigDict(dict(keep=2)))
  state = {"w": jnp.arange(3.0)}
  ck.save(3, state, it)
  ck.close()
  shutil.rmtree(os.path.join(wd, "checkpoints", "3", "data"))
  it2 = small_pipeline().train_iter()
  ck2 = RunCheckpoints(wd, ml_collections.ConfigDict(dict(keep=2)))
  step, _ = ck2.restore_latest(state, it2)
  ck2.close()
  assert step == 3 and list_steps(wd) == [3]          # state fine: not treated as corrupt
  np.testing.assert_array_equal(next(it2)["inputs"], pipe.train[3]["inputs"])
