"""The train step traced for a platform other than this process's (no accelerator needed).

The model reads the platform it is traced for from slmjax.model.platform, so on a CPU-only host
the step can be traced as a TPU slice or a GPU would trace it: tools/compile_step.py compiles the
result with libtpu or JAX's CUDA plugin (slmjax.train.aot), and the tests lower it for CUDA to
inspect the GPU program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from slmjax.model import platform
from slmjax.train import sharding
from slmjax.train.mesh import make_mesh
from slmjax.train.step import abstract_train_state, make_train_step
from slmjax.train.validate import validate


def loop_batch(config, mesh) -> dict:
    """ShapeDtypeStructs of one global batch as the training loop feeds it."""
    b, t = int(config.train.batch_size), int(config.data.seq_len)
    names = ["inputs", "targets", "weights"]
    if config.data.get("mode") == "packed":
        names += ["positions", "segment_ids"]
    sh = sharding.batch_sharding(mesh)
    return {k: jax.ShapeDtypeStruct((b, t), jnp.float32 if k == "weights" else jnp.int32, sharding=sh)
            for k in names}


def trace_step(config, devices, target: str):
    """The config's train step (validated first, as a run on `target` validates it) traced for
    `target` ("cpu", "gpu" or "tpu") over a mesh of `devices`, on the global batch the loop feeds
    it: jax's Traced, to lower (`lowering_platforms` for a platform this process lacks) or inspect."""
    with platform.target(target):
        validate(config, len(devices))
        mesh = make_mesh(config.mesh, devices)
        return make_train_step(config, mesh).trace(abstract_train_state(config, mesh), loop_batch(config, mesh))
