"""``encode``: audio source -> unit dataset, one worker's share of shards, then the merge."""

from __future__ import annotations

import math
import time

from tqdm import tqdm

from slmjax.units.errors import UnitsError
from slmjax.units.sources import list_utterances
from slmjax.units.tokenizer import load_tokenizer
from slmjax.units.writer import (DURATIONS_DTYPE, encode_shard, merge, pending, pin_plan, pinned_plan,
                                 plan_fingerprint, plan_shards, try_merge)


def encode_dataset(tok, utts, out: str, num_workers: int = 1, worker_index: int = 0, shard_utterances: int = 2000,
                   min_seconds: float = 0.0, synthetic: bool = False, durations: bool = False, progress: bool = True):
    """Encode this worker's shards (complete ones only retry the inputs they skipped); merge when every shard is done.

    Returns the manifest dict once merged, else None (other workers still have shards to do, or one is
    rewriting a shard to retry its skipped inputs: that worker merges).
    """
    if num_workers < 1:
        raise UnitsError(f"--num_workers must be >= 1, got {num_workers}")
    if not 0 <= worker_index < num_workers:
        raise UnitsError(f"--worker_index must be in [0, {num_workers}), got {worker_index}")
    shards = _planned_shards(tok, utts, out, shard_utterances, min_seconds, synthetic, durations, create=True)
    todo = [(s, pending(out, s)) for s in shards if s.index % num_workers == worker_index]
    mine = [s for s, utts_left in todo if utts_left]
    total = sum(len(utts_left) for _, utts_left in todo)
    stats = {"audio": 0.0, "start": time.perf_counter()}
    bar = tqdm(total=total, desc=f"encode worker {worker_index}/{num_workers}", unit="file", disable=not progress)

    def on_utt(seconds, _):
        stats["audio"] += seconds
        wall = time.perf_counter() - stats["start"]
        bar.update(1)
        bar.set_postfix(rtf=f"{stats['audio'] / max(wall, 1e-9):.0f}x")

    for shard in mine:
        encode_shard(tok, shard, out, durations=durations, min_seconds=min_seconds, on_utt=on_utt)
    bar.close()
    return try_merge(out, shards, tok, synthetic=synthetic, durations=durations)


def merge_dataset(tok, utts, out: str, shard_utterances: int = 2000, min_seconds: float = 0.0, synthetic: bool = False,
                  durations: bool = False) -> dict:
    """Merge the shards of ``out`` into its manifest; the dataset must have been encoded with these arguments."""
    shards = _planned_shards(tok, utts, out, shard_utterances, min_seconds, synthetic, durations, create=False)
    return merge(out, shards, tok, synthetic=synthetic, durations=durations)


def _planned_shards(tok, utts, out, shard_utterances, min_seconds, synthetic, durations, create):
    """The shard plan, checked against (or, with ``create``, pinned in) ``out/plan.json``."""
    if not (math.isfinite(min_seconds) and min_seconds >= 0):  # before a plan is pinned with it
        raise UnitsError(f"--min_seconds must be a finite number >= 0, got {min_seconds}")
    if durations and tok.coarse is not None:
        raise UnitsError("--durations needs a tokenizer without coarse tokens (durations are per unit)")
    shards = plan_shards(utts, shard_utterances)
    options = {"min_seconds": min_seconds, "synthetic": synthetic, "durations": durations, "shard_utterances": shard_utterances}
    before_dtype = plan_fingerprint(shards, tok.identity, options, sources=False) if durations else None
    if durations:  # a dataset begun with 16-bit durations is not resumed with 32-bit ones
        options["durations_dtype"] = DURATIONS_DTYPE
    try:
        pin_plan(out, plan_fingerprint(shards, tok.identity, options), create,
                 older=plan_fingerprint(shards, tok.identity, options, sources=False))
    except UnitsError:
        if before_dtype is not None and pinned_plan(out) == before_dtype:  # same flags, pinned by the older code
            raise UnitsError(f"{out} holds 16-bit durations of an older slmjax (runs over 65535 frames clipped), "
                             "not to be mixed with 32-bit ones; encode into a new --out") from None
        raise
    return shards


def encode_from_flags(FLAGS, merge_only: bool = False):
    tok = load_tokenizer(FLAGS.tokenizer)
    utts = list_utterances(FLAGS.audio, data_dir=FLAGS.data_dir, holdout=FLAGS.holdout)
    if merge_only:
        manifest = merge_dataset(tok, utts, FLAGS.out, FLAGS.shard_utterances, FLAGS.min_seconds, FLAGS.synthetic,
                                 FLAGS.durations)
    else:
        manifest = encode_dataset(tok, utts, FLAGS.out, FLAGS.num_workers, FLAGS.worker_index, FLAGS.shard_utterances,
                                  FLAGS.min_seconds, FLAGS.synthetic, FLAGS.durations)
    if manifest is None:
        print(f"worker {FLAGS.worker_index}/{FLAGS.num_workers} done; the manifest is written once every worker has finished")
        return
    summary = {s: {k: v[k] for k in ("utterances", "tokens", "seconds")} for s, v in manifest["splits"].items()}
    print(f"wrote {FLAGS.out}/manifest.json: vocab {manifest['vocab_size']}, splits {summary}, skipped {manifest['skipped']}")
