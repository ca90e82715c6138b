"""A spoken corpus: texts read by several voices, with a JSONL manifest that slmjax-units reads.

Layout of ``OUT``::

    manifest.jsonl   one line per utterance: {"path", "id", "text", "voice", "duration", "split"[, "topic"]}
                     path is relative to OUT; duration in seconds; split "train" or "test"
    wavs/NNN/*.wav   16 kHz mono 16-bit PCM
    corpus.json      summary: hours, counts per voice and split, text source, leakage check
    skipped.jsonl    texts left out: the engine could not speak them, or their id repeats an earlier one

Resumable: texts, voices and file names are a pure function of the seed, so a rerun skips every wav
that exists and continues; the manifest is written last, atomically.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import time
from collections import Counter

from tqdm import tqdm

from slmjax.synth import engines, leakage, settings, stories, textsrc
from slmjax.synth.errors import SynthError
from slmjax.fileio import atomic_write_text, remove_stale_temps
from slmjax.synth.render import Job, Renderer, worker_count

SPEED_JITTER, PITCH_JITTER = 0.08, 8


def split_of(utt_id: str, test_fraction: float) -> str:
    """Stable hashed holdout: the same id always lands in the same split."""
    h = int.from_bytes(hashlib.sha1(utt_id.encode()).digest()[:8], "big") / 2.0**64
    return "test" if h < test_fraction else "train"


def build(out: str, hours: float, voices: list[engines.Voice], seed: int = 0, text: str | None = None,
          exclude: list[str] = (), workers: int | None = None, test_fraction: float = 0.01,
          max_utterances: int | None = None) -> dict:
    """Synthesise about ``hours`` of speech (0 = the whole --text file) into ``out``; returns the summary."""
    if not (math.isfinite(hours) and hours >= 0):  # NaN and inf never reach their target: no end
        raise SynthError(f"--hours={hours}: must be >= 0 and finite (0 with --text: the whole file)")
    n_workers = worker_count(workers)
    if hours == 0 and text is None:
        raise SynthError("--hours must be > 0 with the built-in stories (only a --text file can be read to its end)")
    if not 0.0 <= test_fraction < 1.0:
        raise SynthError(f"--test_fraction={test_fraction}: must be in [0, 1)")
    if text and not os.path.isfile(text):
        raise SynthError(f"--text: {text} does not exist")
    os.makedirs(out, exist_ok=True)
    remove_stale_temps(out)  # manifest/summary temporaries of a killed run
    excl = leakage.load(list(exclude))
    # which file holds which text in which voice (the hours only decide how many files there are)
    settings.claim(out, "corpus", {
        "seed": seed, "text_sha256": settings.file_digest(text) if text else None,
        "stories": None if text else stories.TEXT_VERSION,
        "voices": [v.spec for v in voices], "speed_jitter": SPEED_JITTER, "pitch_jitter": PITCH_JITTER,
        "speed_range": list(engines.SPEED_RANGE),  # varied speeds are clipped to it
        "exclude_sha256": excl.digest()}, files=[os.path.join(out, "wavs")])
    source = textsrc.from_file(text) if text else textsrc.from_generator(seed)
    target = hours * 3600.0 if hours > 0 else float("inf")
    limit = max_utterances if max_utterances else None
    records, dropped, seen_ids, failed = [], 0, set(), []
    total = 0.0
    t0 = time.time()
    bar = tqdm(total=None if target == float("inf") else round(target), desc="corpus", unit="s audio",
               dynamic_ncols=True)
    full = lambda: total >= target or (limit is not None and len(records) >= limit)  # noqa: E731
    with Renderer(workers, desc="corpus") as renderer:
        n_considered = n_assigned = 0
        while not full():
            mean = total / len(records) if records else 20.0
            want = (target - total) / mean * 1.05 + 1 if target < float("inf") else 32 * n_workers
            chunk = int(min(32 * n_workers, max(n_workers, want)))
            if limit is not None:
                chunk = min(chunk, limit - len(records))
            taken = list(itertools.islice(source, chunk))
            if not taken:
                break  # the text file is exhausted
            batch = []
            for rec in taken:
                if excl and excl.leaks(rec["text"]):
                    rec["dropped"] = True
                    continue
                if rec["id"] in seen_ids:
                    rec["reason"] = f"id {rec['id']!r} occurs twice: the first text with it is kept"
                    continue
                seen_ids.add(rec["id"])
                # n_assigned counts failed texts too, so that no two texts ever share a file name
                _assign(rec, n_assigned, seed, voices)
                n_assigned += 1
                batch.append(rec)
            durations = renderer.render([Job(os.path.join(out, r["path"]), r["text"], r["voice"]) for r in batch],
                                        bar=bar, allow_failures=True)
            for rec, dur in zip(batch, durations):
                rec["duration"] = dur
                if dur is None:  # the engine could not speak this text: recorded, not in the corpus
                    rec["reason"] = renderer.failures[os.path.join(out, rec["path"])]
            # in source order, so that where the corpus ends does not depend on the batch size
            for rec in taken:
                if full():  # taken past the target: not part of the corpus, nor of its counts
                    if rec.get("duration") is not None:
                        os.remove(os.path.join(out, rec["path"]))
                    continue
                n_considered += 1
                if rec.get("dropped"):
                    dropped += 1
                elif "reason" in rec:
                    failed.append({"id": rec["id"], "text": rec["text"][:200], "reason": rec["reason"]})
                else:
                    rec["duration"] = round(rec["duration"], 4)
                    records.append(rec)
                    total += rec["duration"]
        # of the corpus's files: texts read past the target were synthesised too, then removed
        made_now = sum(os.path.join(out, r["path"]) in renderer.made for r in records)
        new_seconds = renderer.seconds_synthesised
    bar.close()
    wall = time.time() - t0
    if not records:
        raise SynthError(f"corpus: nothing to write ({n_considered} texts read, {dropped} held benchmark items, "
                         f"{len(failed)} skipped)")

    lines = []
    for r in records:
        row = {"path": r["path"], "id": r["id"], "text": r["text"], "voice": r["voice"].spec,
               "duration": r["duration"], "split": split_of(r["id"], test_fraction)}
        if "topic" in r:
            row["topic"] = r["topic"]
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(os.path.join(out, "manifest.jsonl"), "\n".join(lines) + "\n")
    atomic_write_text(os.path.join(out, "skipped.jsonl"), "".join(json.dumps(f) + "\n" for f in failed))
    summary = {
        "utterances": len(records), "hours": round(total / 3600, 4),
        "per_voice": dict(Counter(r["base_voice"] for r in records)),
        "per_split": dict(Counter(split_of(r["id"], test_fraction) for r in records)),
        "source": os.path.abspath(text) if text else f"built-in stories, seed {seed}",
        "voices": [v.spec for v in voices], "speed_jitter": SPEED_JITTER, "pitch_jitter": PITCH_JITTER,
        "leakage": {"exclude": [os.path.abspath(e) for e in exclude], "benchmark_hashes": len(excl),
                    "texts_dropped": dropped, "texts_considered": n_considered},
        "skipped_texts": len(failed), "synthesised_now": made_now, "already_there": len(records) - made_now,
        "wall_seconds": round(wall, 2), "workers": n_workers,
        # speed of this run's synthesis (files already there excluded): audio seconds per wall second
        "realtime_factor": round(new_seconds / max(wall, 1e-9), 1),
        "audio_hours_per_minute": round(new_seconds / 3600 / max(wall, 1e-9) * 60, 3),
    }
    atomic_write_text(os.path.join(out, "corpus.json"), json.dumps(summary, indent=1) + "\n")
    return summary


def _assign(rec: dict, k: int, seed: int, voices: list[engines.Voice]) -> None:
    """Give the k-th spoken text its voice (the k-th in turn, varied by its id) and its file name."""
    import numpy as np

    base = voices[k % len(voices)]
    rng = np.random.default_rng(random.Random(f"{seed}:{rec['id']}").getrandbits(64))
    rec["base_voice"] = base.spec
    rec["voice"] = base.varied(rng, SPEED_JITTER, PITCH_JITTER)
    rec["path"] = f"wavs/{k // 1000:04d}/{k:08d}.wav"


def read_manifest(path: str) -> list[dict]:
    """Rows of a corpus manifest.jsonl, each path made absolute."""
    root = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                row["path"] = row["path"] if os.path.isabs(row["path"]) else os.path.join(root, row["path"])
                rows.append(row)
    return rows
