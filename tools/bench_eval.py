"""Benchmark of zero-shot scoring: files/s and tokens/s scored vs the raw forward pass.

Scores synthetic benchmark files (unit lengths drawn like sBLIMP/sWUGGY or StoryCloze files) with
the slmjax model, then times the bare jitted forward pass of the same model on the same machine:
  forward_tokens_per_sec               every token of the very batch shapes the scorer ran (no padding
                                       counted as waste, no log-softmax, no host work): the ceiling;
  forward_full_context_tokens_per_sec  rows of the full context, as in training.
Last line: JSON with score_tokens_per_sec, forward_tokens_per_sec and their ratio (goal >= 0.8).

  python tools/bench_eval.py --dim=256 --n_layers=4 --n_files=2000 --lengths=sblimp
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags

import benchcli  # tools/, beside this script
from slmjax import hostalloc, hostdevices

flags.DEFINE_string("size", None, "A paper size (s20m, ...); else --dim/--n_layers/--n_heads.")
flags.DEFINE_integer("dim", 256, "Model width.", lower_bound=1)
flags.DEFINE_integer("n_layers", 4, "Layers.", lower_bound=1)
flags.DEFINE_integer("n_heads", 4, "Heads.", lower_bound=1)
flags.DEFINE_integer("vocab_size", 502, "Vocabulary (units + EOS + PAD).", lower_bound=3)
flags.DEFINE_integer("max_len", 1024, "Model context.", lower_bound=3)
flags.DEFINE_integer("n_files", 2000, "Benchmark files to score.", lower_bound=1)
flags.DEFINE_enum("lengths", "sblimp", ["sblimp", "storycloze"], "Unit-length distribution: "
                  "sblimp ~ 25 Hz units of 1-4 s sentences; storycloze ~ 15-25 s stories.")
flags.DEFINE_enum("batching", "auto", ["auto", "bucket", "pack"], "Scorer batching.")
flags.DEFINE_integer("tokens_per_batch", 16384, "Tokens per scoring batch.", lower_bound=1)
flags.DEFINE_integer("repeats", 2, "Timed repetitions (best is reported); one warm-up before.",
                     lower_bound=1)
FLAGS = flags.FLAGS


def _lengths(rng, n):
    import numpy as np
    if FLAGS.lengths == "sblimp":
        seconds = rng.uniform(1.0, 4.0, n)
    else:
        seconds = rng.uniform(15.0, 25.0, n)
    units = np.maximum(2, (seconds * 25 * 0.75).astype(int))   # 25 Hz, ~0.75 units/frame kept
    return np.minimum(units, FLAGS.max_len - 1)


def _best_interleaved(fns, repeats):
    """Best wall time of each function, runs interleaved so that load changes hit all alike."""
    for fn in fns:
        fn()  # warm-up: compiles every shape
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def main(argv):
    del argv
    hostdevices.request(hostdevices.host_cores())  # as slmjax-eval: one CPU device per core
    import jax
    import numpy as np

    import slmjax.model
    from slmjax.analysis.zeroshot.scoring import Scorer, benchmark_sequence, model_logits_fn

    if FLAGS.size and FLAGS.size not in slmjax.model.MODEL_SIZES:
        benchcli.fail(f"--size={FLAGS.size}: not one of {', '.join(slmjax.model.MODEL_SIZES)}")
    shape = (slmjax.model.MODEL_SIZES[FLAGS.size] if FLAGS.size else
             dict(dim=FLAGS.dim, n_layers=FLAGS.n_layers, n_heads=FLAGS.n_heads))
    cfg = slmjax.model.ModelConfig(vocab_size=FLAGS.vocab_size, max_seq_len=FLAGS.max_len, **shape)
    if problems := cfg.problems():  # e.g. --n_heads that does not divide --dim
        benchcli.fail("\n".join(problems))
    slmjax.model.param_logical_axes(cfg)
    params = slmjax.model.init_params(cfg, jax.random.key(0))
    eos, pad = cfg.vocab_size - 2, cfg.vocab_size - 1
    rng = np.random.default_rng(0)
    seqs = [benchmark_sequence(rng.integers(0, eos, n), eos) for n in _lengths(rng, FLAGS.n_files)]
    real_tokens = sum(len(s) - 1 for s in seqs)

    logits_fn = model_logits_fn(cfg)  # as slmjax-eval scores
    scorer = Scorer(logits_fn, params, max_len=cfg.max_seq_len, pad_id=pad, progress=False,
                    tokens_per_batch=FLAGS.tokens_per_batch, mode=FLAGS.batching, width=cfg.dim)

    # The same batch shapes, every token counted, bare forward (logits materialised, then dropped).
    lengths = np.array([len(s) - 1 for s in seqs])
    batches = scorer.plan(lengths, seqs)
    rows = jax.sharding.NamedSharding(scorer.mesh, jax.sharding.PartitionSpec("data"))
    # Per-row sums stay on their devices: a program with a cross-device sum, queued hundreds of
    # times without waiting, deadlocks XLA's collectives on several CPU devices.
    fwd = jax.jit(lambda p, t, pos, seg: logits_fn(p, t, pos, seg).sum(axis=(1, 2)))
    inputs = [tuple(None if x is None else jax.device_put(x, rows)
                    for x in (b.tokens, b.positions, b.segment_ids)) for b in batches]
    shape_tokens = sum(b.tokens.size for b in batches)

    def run_forward():
        with jax.set_mesh(scorer.mesh):
            outs = [fwd(scorer.params, *x) for x in inputs]
        jax.block_until_ready(outs)

    full_rows = max(scorer.n_dev, FLAGS.tokens_per_batch // cfg.max_seq_len // scorer.n_dev *
                    scorer.n_dev)
    full = jax.device_put(rng.integers(0, eos, (full_rows, cfg.max_seq_len)).astype(np.int32), rows)

    def run_full():
        with jax.set_mesh(scorer.mesh):
            jax.block_until_ready(fwd(scorer.params, full, None, None))

    t_score, t_fwd, t_full = _best_interleaved(
        [lambda: scorer.score(seqs), run_forward, run_full], FLAGS.repeats)
    result = {
        "score_tokens_per_sec": real_tokens / t_score,
        "forward_tokens_per_sec": shape_tokens / t_fwd,
        "ratio": (real_tokens / t_score) / (shape_tokens / t_fwd),
        "files_per_sec": len(seqs) / t_score,
        "forward_full_context_tokens_per_sec": full.size / t_full,
        "padding_fraction": 1 - real_tokens / shape_tokens,
        "n_files": len(seqs), "scored_tokens": int(real_tokens), "batches": len(batches),
        "batching": FLAGS.batching,
        "plan": "pack" if batches and batches[0].segment_ids is not None else "bucket",
        "row_lengths": sorted({int(b.tokens.shape[1]) for b in batches}), "lengths": FLAGS.lengths,
        "model": {"dim": cfg.dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
                  "vocab_size": cfg.vocab_size, "max_len": cfg.max_seq_len},
        "device": f"{jax.devices()[0].platform} x{jax.device_count()}",
        "cpu_count": os.cpu_count(),
    }
    print(f"scored {len(seqs)} files ({real_tokens} tokens) in {t_score:.2f} s: "
          f"{result['files_per_sec']:.1f} files/s, {result['score_tokens_per_sec']:.0f} tokens/s; "
          f"bare forward on the same shapes {result['forward_tokens_per_sec']:.0f} tokens/s "
          f"(ratio {result['ratio']:.2f}, padding {result['padding_fraction']:.1%}); "
          f"full-context forward {result['forward_full_context_tokens_per_sec']:.0f} tokens/s")
    print(json.dumps(result))


if __name__ == "__main__":
    hostalloc.use_fast_allocator()
    app.run(main, flags_parser=benchcli.parse_flags)
