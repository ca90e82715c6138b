"""slmjax-eval: zero-shot sBLIMP / sWUGGY / sSC / tSC scores of a run's checkpoints.

  slmjax-eval --workdir=RUN --benchmarks=ROOT [--steps=all|last|1000,2000] [--tokenizer=TOKDIR]
  slmjax-eval --validate --benchmarks=ROOT
  slmjax-eval --release_checkpoint=PATH --tokenizer=TOKDIR --benchmarks=ROOT --out=DIR

Writes RUN/zeroshot/<step>/ (or DIR/zeroshot/release/): scores.json and official submission files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from absl import app, flags, logging

from slmjax import cli_help, fileio, hostalloc, hostdevices
from slmjax.analysis.zeroshot import benchmarks as bm
from slmjax.analysis.zeroshot import runs
from slmjax.analysis.zeroshot.errors import ZeroShotError
from slmjax.errortext import describe

FLAGS = flags.FLAGS
cli_help.DEFINE_path("workdir", None, "Run directory (config.json, checkpoints/); scores go to "
                    "<workdir>/zeroshot/<step>/.")
cli_help.DEFINE_path("benchmarks", None, "Root holding lexical/, syntactic/ (sLM21 layout), sSC/, "
                    "tSC/.")
flags.DEFINE_string("steps", "all", "Checkpoints to score: all, last, or a comma list of steps.")
cli_help.DEFINE_path("tokenizer", None, "Tokenizer dir (slmjax-units fit); default: the run's "
                    "dataset manifest tokenizer_dir. Must match the run's tokenizer identity.")
flags.DEFINE_list("tasks", [], "Only these tasks or sets (swuggy, sblimp, ssc, tsc, sblimp_dev, ...).")
cli_help.DEFINE_path("units_cache", None, "Cache of benchmark units (default: "
                    "<benchmarks>/.slmjax_units, or $SLMJAX_CACHE/units (default "
                    "~/.cache/slmjax/units) if that cannot be written).")
flags.DEFINE_boolean("validate", False, "Only check the benchmark sets and list every problem.")
flags.DEFINE_boolean("force", False, "Score the asked sets again even where scores.json has them "
                     "(it is otherwise completed with the sets it lacks).")
cli_help.DEFINE_path("release_checkpoint", None, "Score a checkpoint of the paper's PyTorch release "
                    "(directory with config.json + model.safetensors, or a state-dict file).")
cli_help.DEFINE_path("out", None, "Output root for --release_checkpoint (writes <out>/zeroshot/release/).")
cli_help.DEFINE_path_list("test_data", None, "Unit datasets whose test split gives the test loss (default: "
                  "the run's own test data, as its trainer took it: the natural-speech datasets' "
                  "data.test_split, or the data.holdout part held out of training); empty to skip.")
flags.DEFINE_enum("batching", "auto", ["auto", "bucket", "pack"], "bucket: length-bucketed "
                  "right-padded rows; pack: several files per row with segment ids; auto: the "
                  "cheaper plan for each benchmark.")
flags.DEFINE_integer("context", 0, "Targets per scored row; a longer sequence keeps its end. 0: the "
                     "run's training context (data.seq_len; the model never saw later positions), "
                     "or a release checkpoint's max_seq_len.")
flags.DEFINE_integer("tokens_per_batch", 65536, "Tokens per scoring batch (over all devices).")
flags.DEFINE_integer("cpu_devices", 0, "On a CPU-only host: JAX devices to split it into, scoring "
                     "batches spread over them (0 = one per core; 1 = one device). A device count "
                     "forced with XLA_FLAGS wins.", lower_bound=0)
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16", "auto"], "Matmul compute dtype for scoring "
                  "(default: the checkpoint's model.dtype; float32 for the closest match to a "
                  "float32 reference).")


def _report_problems(benches) -> list:
    usable = []
    for b in benches:
        errors = b.errors
        for p in errors[:5]:
            logging.warning("%s", p)
        if len(errors) > 5:
            logging.warning("%s: %d more problems; run slmjax-eval --validate", b.name,
                            len(errors) - 5)
        if b.pairs or b.submission_only:
            usable.append(b)
        else:
            logging.error("%s: no usable pairs, skipped", b.name)
    if not usable:
        raise ZeroShotError(f"no usable benchmark set under {FLAGS.benchmarks}; "
                            "run slmjax-eval --validate --benchmarks=ROOT")
    return usable


def _validate() -> int:
    problems = bm.validate(FLAGS.benchmarks)
    for p in problems:
        print(p)
    n = {kind: sum(p.severity == kind for p in problems) for kind in ("error", "warning", "note")}
    for b in bm.discover(FLAGS.benchmarks):
        what = "submission only (no gold.csv)" if b.submission_only else f"{len(b.pairs)} pairs"
        print(f"{b.name}: {what}, {len(b.files)} files in {b.directory}")
    print(f"{n['error']} errors, {n['warning']} warnings, {n['note']} notes")
    return 1 if n["error"] else 0


def _encode_all(benches, tok, identity):
    from slmjax.analysis.zeroshot.units_cache import default_cache_dir, encode_benchmark
    cache = FLAGS.units_cache or default_cache_dir(FLAGS.benchmarks)
    return {b.name: encode_benchmark(b, tok, cache, identity) for b in benches}


def _compute_dtype(model_dtype: str | None) -> str:
    """The dtype the scores are computed in: --dtype or the model's, "auto" resolved on this backend."""
    from slmjax.model.config import resolve_dtype

    return str(resolve_dtype(FLAGS.dtype or model_dtype or "float32"))


def _make_scorer(cfg, params, pad_id, context):
    import dataclasses

    if FLAGS.dtype:
        cfg = dataclasses.replace(cfg, dtype=FLAGS.dtype)
    from slmjax.analysis.zeroshot.scoring import Scorer, model_logits_fn

    return Scorer(model_logits_fn(cfg), params, max_len=context, pad_id=pad_id,
                  tokens_per_batch=FLAGS.tokens_per_batch, mode=FLAGS.batching, width=cfg.dim)


def _wanted_context(workdir=None):
    """(context, where it comes from) before any checkpoint is read; context None = the model's
    max_seq_len (a release checkpoint: its config is read with the weights)."""
    if FLAGS.context:
        return FLAGS.context, f"--context={FLAGS.context}"
    if workdir is None:
        return None, "the model's max_seq_len"
    seq = runs.training_context(workdir)
    return seq, f"the run's data.seq_len={seq}"


def _resolve_context(wanted, cfg):
    context, source = wanted
    if context is None:
        return cfg.max_seq_len
    if not 0 < context <= cfg.max_seq_len:
        raise ZeroShotError(f"{source}: the scoring context must be in 1..{cfg.max_seq_len} (the "
                            "model's max_seq_len)")
    return context


def _still_to_score(path: Path, asked: dict, benches: list, test_sets: dict):
    """What one checkpoint's ``path`` (scores.json) lacks: ``(benches, test_sets, previous)``.

    ``previous`` (the record to add to) is None when there is none, or when it was made with other
    ``asked`` settings (context, compute dtype, tokenizer, checkpoint; None: any), as scores made
    with other settings do not mix. A set counts as scored when the record has it from the same
    directory and files (its fingerprint), under ``tasks`` (with gold) or ``submission_only``
    (without: gold that came since is scored); a test loss, when it has it of the same dataset."""
    from slmjax.analysis.zeroshot.evaluate import record_problem
    try:
        previous = fileio.read_json_object(path) if path.exists() else None
        unreadable = record_problem(previous) if previous is not None else None
    except (OSError, ValueError, fileio.NotAJSONObject) as e:
        unreadable = describe(e)
    if unreadable:
        logging.warning("%s cannot be read (%s): scoring again", path, unreadable)
        previous = None
    differs = [f"{k} {previous.get(k)}, not {v}" for k, v in asked.items()
               if previous is not None and v is not None and previous.get(k) != v]
    recorded = {(block, name): (Path(t.get("directory", "")).resolve(), t.get("fingerprint"))
                for block in ("tasks", "submission_only") if previous is not None
                for name, t in previous.get(block, {}).items()}
    if differs:
        dropped = sorted({name for _, name in recorded} - {b.name for b in benches})
        logging.warning("%s was scored with %s: scoring again%s", path, "; ".join(differs),
                        f" (its sets not asked now are dropped: {dropped})" if dropped else "")
        previous = None
    if previous is None or FLAGS.force:
        return benches, test_sets, previous
    return ([b for b in benches
             if recorded.get((b.scores_block, b.name)) != (Path(b.directory).resolve(),
                                                           b.fingerprint)],
            {n: t for n, t in test_sets.items() if not _has_test_loss(previous, n, t)},
            previous)


def _left_to_score(what: str, path: Path, asked: dict, benches: list, test_sets: dict):
    """:func:`_still_to_score`, said in the log; None when ``what`` (``step 2``, ``release
    checkpoint``) has nothing left to score."""
    from slmjax.analysis.zeroshot.evaluate import backfill_items
    sets, tests, previous = _still_to_score(path, asked, benches, test_sets)
    if previous is not None:
        now = {b.name for b in sets}
        written = backfill_items(path.parent, [b for b in benches if b.name not in now], previous)
        if written:
            logging.warning("%s: wrote items/ of %s from per_file/ (scored before item outcomes "
                            "were written; no model run)", what, written)
    if not sets and not tests:
        logging.warning("%s already scored (%s); --force to redo", what, path)
        return None
    if previous is not None:
        logging.warning("%s: scoring %s into %s", what, [b.name for b in sets] + [
            f"test loss {n}" for n in tests], path)
    return sets, tests, previous


def _has_test_loss(previous: dict, name: str, test_set) -> bool:
    """Whether ``previous`` holds the test loss ``name`` of the same dataset (not one of another
    dataset with the same name)."""
    entry = previous.get("test_loss", {}).get(name, {})
    return entry.get("dataset") == str(Path(test_set.path).resolve())


def _check_vocab(cfg, tok, where):
    if cfg.vocab_size != tok.vocab_size:
        raise ZeroShotError(f"{where}: model vocab_size {cfg.vocab_size} but tokenizer vocab_size "
                            f"{tok.vocab_size} (units {tok.eos_id} = EOS): not the same units")


def _select_steps(available: list) -> list:
    if not available:
        raise ZeroShotError(f"{FLAGS.workdir} has no checkpoints")
    if FLAGS.steps == "all":
        return available
    if FLAGS.steps == "last":
        return available[-1:]
    try:
        wanted = [int(s) for s in FLAGS.steps.split(",") if s.strip()]
    except ValueError:
        raise ZeroShotError(f"--steps={FLAGS.steps!r}: expected all, last or a comma list of "
                            "integers") from None
    if not wanted:   # --steps= (an empty variable in a script): nothing scored, exit 0, silently
        raise ZeroShotError(f"--steps={FLAGS.steps!r} names no step; expected all, last or a "
                            "comma list of integers")
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise ZeroShotError(f"--steps: no checkpoint for {missing}; available: {available}")
    return wanted


def _writable(folder: Path) -> None:
    """Make ``folder`` and write a file in it, or one ZeroShotError: found after scoring, the
    scores would be lost."""
    problem = fileio.dir_write_problem(folder)
    if problem:
        raise ZeroShotError(problem)


def _score_run():
    from slmjax.analysis.zeroshot.evaluate import evaluate_model
    workdir = Path(FLAGS.workdir)
    units = runs.run_units(workdir)
    steps = _select_steps(runs.list_checkpoint_steps(workdir))
    benches = _report_problems(bm.discover(FLAGS.benchmarks, FLAGS.tasks))
    test_sets = (runs.heldout_datasets(units) if FLAGS.test_data is None else
                 runs.named_test_sets(FLAGS.test_data))
    wanted = _wanted_context(workdir)
    # A run without unit datasets names no tokenizer: the one given keys its scores.
    tok = None if units.identity is not None else runs.load_run_tokenizer(units, FLAGS.tokenizer)
    settings = {"context": wanted[0], "compute_dtype": _compute_dtype(runs.model_dtype(workdir)),
                "tokenizer": units.identity or tok.identity}
    todo = {}
    for s in steps:
        path = workdir / "zeroshot" / str(s) / "scores.json"
        asked = {**settings, "checkpoint": runs.checkpoint_fingerprint(workdir, s)}
        left = _left_to_score(f"step {s}", path, asked, benches, test_sets)
        if left is not None:
            todo[s] = *left, asked["checkpoint"]
    if not todo:
        return
    tok = tok or runs.load_run_tokenizer(units, FLAGS.tokenizer)
    runs.check_test_sets({n: t for _, tests, *_ in todo.values() for n, t in tests.items()},
                         tok.identity)
    for s in todo:
        _writable(workdir / "zeroshot" / str(s))
    needed = {b.name for sets, *_ in todo.values() for b in sets}
    encoded = _encode_all([b for b in benches if b.name in needed], tok, tok.identity)
    scorer = None
    for step, (sets, tests, previous, checkpoint) in todo.items():
        cfg, params, got = runs.restore(workdir, step)
        _check_vocab(cfg, tok, f"{workdir} step {step}")
        if scorer is None:
            context = _resolve_context(wanted, cfg)
            scorer = _make_scorer(cfg, params, tok.pad_id, context)
        else:
            scorer.set_params(params)
        meta = {"step": int(got), "workdir": str(workdir), "source": "run checkpoint",
                "checkpoint": checkpoint, "tokenizer": tok.identity, "batching": FLAGS.batching,
                "compute_dtype": _compute_dtype(cfg.dtype), "context": context}
        scores = evaluate_model(scorer, sets, encoded, tok.eos_id, workdir / "zeroshot" / str(got),
                                meta, tests, previous)
        print(json.dumps({"step": int(got), **{k: round(v["accuracy"], 4) for k, v in
                                                scores["headline"].items()}}))


def _score_release():
    import slmjax.model
    from slmjax.analysis.zeroshot.evaluate import evaluate_model
    if not FLAGS.tokenizer or not FLAGS.out:
        raise ZeroShotError("--release_checkpoint needs --tokenizer=TOKDIR (the units the release "
                            "was trained on) and --out=DIR")
    path = FLAGS.release_checkpoint
    if os.path.isdir(path):   # its config.json named in the error, not a JSON traceback
        runs.read_json(Path(path) / "config.json", "release checkpoint config")
    try:
        cfg, params = slmjax.model.load_release_checkpoint(path)
    except slmjax.model.CheckpointFormatError as e:
        raise ZeroShotError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - any file that is not a checkpoint: one line
        raise ZeroShotError(f"{path}: not a release checkpoint ({describe(e)})") from None
    tok = runs.load_run_tokenizer(runs.RunUnits(None, None, None, None, None, []), FLAGS.tokenizer)
    _check_vocab(cfg, tok, FLAGS.release_checkpoint)
    benches = _report_problems(bm.discover(FLAGS.benchmarks, FLAGS.tasks))
    context = _resolve_context(_wanted_context(), cfg)
    out = Path(FLAGS.out) / "zeroshot" / "release"
    asked = {"context": context, "compute_dtype": _compute_dtype(cfg.dtype),
             "tokenizer": tok.identity, "checkpoint": runs.release_fingerprint(path)}
    left = _left_to_score("release checkpoint", out / "scores.json", asked, benches,
                          runs.named_test_sets(FLAGS.test_data or []))
    if left is None:
        return
    sets, test_sets, previous = left
    runs.check_test_sets(test_sets, tok.identity)
    _writable(out)
    encoded = _encode_all(sets, tok, tok.identity)
    meta = {"step": None, "release_checkpoint": str(FLAGS.release_checkpoint),
            "source": "release checkpoint", "batching": FLAGS.batching, **asked}
    scorer = _make_scorer(cfg, params, tok.pad_id, context)
    scores = evaluate_model(scorer, sets, encoded, tok.eos_id, out, meta, test_sets, previous)
    print(json.dumps({k: round(v["accuracy"], 4) for k, v in scores["headline"].items()}))


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
    # Before JAX starts: one device per CPU core (slmjax.hostdevices), 1.1-1.4x the files/s of one.
    hostdevices.request(FLAGS.cpu_devices or hostdevices.host_cores())
    try:
        if not FLAGS.benchmarks:
            raise ZeroShotError("--benchmarks=ROOT is required")
        if FLAGS.tokens_per_batch < 1:
            raise ZeroShotError(f"--tokens_per_batch={FLAGS.tokens_per_batch}: must be >= 1")
        if FLAGS.validate:
            return _validate()
        if FLAGS.release_checkpoint:
            return _score_release()
        if not FLAGS.workdir:
            raise ZeroShotError("--workdir=RUN (or --release_checkpoint=PATH) is required")
        _score_run()
    except ZeroShotError as e:
        print(f"slmjax-eval: error: {e}", file=sys.stderr)
        return 2
    return 0


def run():
    hostalloc.use_fast_allocator()
    cli_help.adopt(__name__)
    app.run(main)


if __name__ == "__main__":
    run()
