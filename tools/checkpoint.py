"""Inspect a run's checkpoints, or export one to the paper's release format.

    python tools/checkpoint.py inspect RUN [--step=S]
    python tools/checkpoint.py export RUN --out=DIR [--step=S]

`inspect` prints the run's status, its checkpoint steps and, for one step (default: the latest),
every parameter's shape, RMS and whether it is finite; the last line is one JSON object.
`export` writes config.json + model.safetensors in the layout of the paper's PyTorch release
(what `slmjax-eval --release_checkpoint` and the release's own code read), float32, tied output.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags

from slmjax import cli_help

_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_OUT = cli_help.DEFINE_path("out", None, "export: directory to write (created).")


def _fail(message: str) -> None:
    print(f"checkpoint: {message}", file=sys.stderr)
    sys.exit(2)


def _restore(workdir: str):
    from slmjax.train.checkpoint import restore_params
    from slmjax.train.run_files import RunError

    try:
        return restore_params(workdir, _STEP.value)
    except RunError as e:
        _fail(str(e))


def _tensors(params) -> dict:
    """'a/b/c' -> every parameter as stored (float64 copies are made one at a time: all at once
    they took 8 bytes per parameter, 6.6 GB beside s823m's weights), in tree order."""
    import jax

    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): v for path, v in flat}


def inspect(workdir: str) -> dict:
    from slmjax.model import count_params
    from slmjax.train.checkpoint import list_steps
    from slmjax.train.run_files import read_json

    cfg, params, step = _restore(workdir)
    run = read_json(os.path.join(workdir, "run.json")) or {}
    tensors = _tensors(params)
    total, nonemb = count_params(cfg)
    print(f"run {workdir}: status {run.get('status', 'unknown')}; checkpoints at steps {list_steps(workdir)}")
    print(f"model: {cfg.n_layers} layers, dim {cfg.dim}, {cfg.n_heads} heads, ffn {cfg.ffn_dim}, vocab "
          f"{cfg.vocab_size}; {total:,} parameters ({nonemb:,} non-embedding); step {step}\n")
    print(f"| {'parameter':<40} | {'shape':<16} | {'RMS':>10} | finite |")
    print(f"|{'-' * 42}|{'-' * 18}|{'-' * 12}|--------|")
    bad = []
    for name, t in tensors.items():
        x = np.asarray(t, np.float64).ravel()
        finite = bool(np.isfinite(x).all())
        if not finite:
            bad.append(name)
        rms = float(np.sqrt(np.dot(x, x) / x.size)) if finite else float("nan")
        del x
        print(f"| {name:<40} | {str(tuple(t.shape)):<16} | {rms:>10.4g} | {'yes' if finite else 'NO':<6} |")
    result = {"workdir": workdir, "step": step, "n_params": sum(x.size for x in tensors.values()),
              "n_params_model": total, "n_tensors": len(tensors), "non_finite": bad,
              "status": run.get("status")}
    print(json.dumps(result))
    return result


def export(workdir: str, out: str) -> None:
    from slmjax.errortext import describe
    from slmjax.model import CheckpointFormatError, save_release_checkpoint

    cfg, params, step = _restore(workdir)
    if os.path.isfile(out):
        _fail(f"--out={out} is an existing file, not a directory")
    try:
        save_release_checkpoint(out, cfg, params)
    except CheckpointFormatError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"--out={out}: cannot write ({describe(e)})")
    print(f"step {step} of {workdir} -> {out} (config.json + model.safetensors, the release's format)")


def main(argv):
    if len(argv) != 3 or argv[1] not in ("inspect", "export"):
        _fail("usage: tools/checkpoint.py inspect|export RUN [--step=S] [--out=DIR]")
    command, workdir = argv[1], argv[2]
    if not os.path.isdir(workdir):
        _fail(f"{workdir}: no such run directory")
    if command == "inspect":
        inspect(workdir)
    elif not _OUT.value:
        _fail("export needs --out=DIR")
    else:
        export(workdir, _OUT.value)


if __name__ == "__main__":
    app.run(main)
