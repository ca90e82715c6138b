"""Score one model on benchmark sets and write ``<out>/`` (submission files + ``scores.json``).

Layout of ``<out>`` (``RUN/zeroshot/<step>/``):
  scores.json                       every task x convention x metric: n_items, accuracy, ci95, ties;
                                    sets without gold.csv under ``submission_only`` (no accuracy)
  <convention>/lexical/dev.txt ...  official submission files, ``<stem> <score>`` per line
  <convention>/sSC.txt, tSC.txt
  per_file/<benchmark>.tsv          stem, n_units (unit predictions scored), sum_logprob,
                                    eos_logprob, truncated, file_units (units of the file: more
                                    than n_units where the context cut it)
  items/<benchmark>.tsv             per item (sets with gold): its key, type, frequency, pairs and
                                    outcome under each convention (itemfile.ITEM_COLUMNS)
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import jax
import numpy as np
from absl import logging

from slmjax import fileio
from slmjax.analysis.zeroshot import itemfile, rules
from slmjax.analysis.zeroshot.benchmarks import submission_file
from slmjax.analysis.zeroshot.errors import ZeroShotError
from slmjax.analysis.zeroshot.scoring import CONVENTIONS, SeqStats, benchmark_sequence, file_scores
from slmjax.errortext import describe

SCORES_VERSION = 1
PER_FILE_COLUMNS = ("stem", "n_units", "sum_logprob", "eos_logprob", "truncated",
                    "file_units")   # per_file/<set>.tsv
# per_file tables written before file_units (read back to write items/ tables)
_PER_FILE_COLUMNS_BEFORE = PER_FILE_COLUMNS[:5]
# What a record must share with this scoring to be added to (scores made otherwise do not mix).
SETTINGS = ("context", "compute_dtype", "tokenizer", "checkpoint")
LOCK_NAME = ".scores.json.lock"
# The lock is held to re-read, merge and write scores.json: milliseconds.
LOCK_WAIT_SECONDS = 600.0


def _atomic_write(path: Path, text: str):
    if jax.process_index() != 0:   # every host scores; one writes
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write_text(path, text)


def score_benchmark(scorer, bench, units: dict, eos_id: int):
    """Per-file stats of the benchmark's encoded files: ``(stems, SeqStats)``."""
    stems = [s for s in bench.files if s in units]
    stats = scorer.score([benchmark_sequence(units[s], eos_id) for s in stems],
                         desc=f"scoring {bench.name}")
    return stems, stats


def summarize(bench, stems, stats, skipped: dict) -> dict:
    """scores.json entry for one benchmark: every convention's accuracy rows, or for a
    submission-only set (no gold) what was scored (``n_skipped``: stems its submission lacks)."""
    entry = {"task": bench.task, "split": bench.split,
             "directory": str(Path(bench.directory).resolve()), "fingerprint": bench.fingerprint,
             "n_files": len(stems)}
    if bench.submission_only:
        return {**entry, "n_skipped": len(skipped), **_common(bench, stats, skipped)}
    pairs = scored_pairs(bench, stems)
    return {**entry, "n_pairs": len(pairs), "n_pairs_dropped": len(bench.pairs) - len(pairs),
            **_common(bench, stats, skipped),
            "conventions": {conv: rules.aggregate(
                bench.task, pairs, dict(zip(stems, file_scores(stats, conv).tolist())))
                for conv in CONVENTIONS}}


def scored_pairs(bench, stems) -> list:
    """The benchmark's pairs whose two files were both scored."""
    scored = set(stems)
    return [p for p in bench.pairs if p.pos in scored and p.neg in scored]


def _common(bench, stats, skipped: dict) -> dict:
    return {"n_truncated": int(stats.truncated.sum()),
            "skipped_files": dict(sorted(skipped.items())),
            "problems": [str(p) for p in bench.problems]}


def write_submissions(out: Path, bench, stems, stats):
    for conv in CONVENTIONS:
        values = file_scores(stats, conv)
        lines = "".join(f"{s} {float(v)!r}\n" for s, v in zip(stems, values))
        _atomic_write(out / conv / bench.submission, lines)
    rows = ["\t".join(PER_FILE_COLUMNS) + "\n"] + [
        f"{s}\t{int(n) - 1}\t{float(b)!r}\t{float(e)!r}\t{int(t)}\t{int(length) - 2}\n"
        for s, n, b, e, t, length in zip(stems, stats.n_targets, stats.body_logprob,
                                         stats.last_logprob, stats.truncated, stats.seq_len)]
    _atomic_write(out / "per_file" / f"{bench.name}.tsv", "".join(rows))
    if not bench.submission_only:
        _write_items(out, bench, stems, stats)


def _write_items(out: Path, bench, stems, stats):
    scores = {conv: dict(zip(stems, file_scores(stats, conv).tolist())) for conv in CONVENTIONS}
    _atomic_write(out / "items" / f"{bench.name}.tsv",
                  itemfile.items_tsv(scored_pairs(bench, stems), scores))


def _read_per_file(path: Path):
    """(stems, SeqStats) from a per_file/<set>.tsv; ValueError when it is not as written."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = tuple(lines[0].split("\t")) if lines else ()
    if header not in (PER_FILE_COLUMNS, _PER_FILE_COLUMNS_BEFORE):
        raise ValueError("not a per_file table (header)")
    rows = [ln.split("\t") for ln in lines[1:]]
    if any(len(r) != len(header) for r in rows):
        raise ValueError(f"a line without its {len(header)} fields")
    stems = [r[0] for r in rows]
    col = lambda j, t: np.array([t(r[j]) for r in rows], dtype=t)
    n_targets = col(1, int) + 1
    # an earlier table has no file_units: the scored length stands for it
    seq_len = col(5, int) + 2 if len(header) > 5 else n_targets + 1
    return stems, SeqStats(col(2, float), col(3, float), n_targets, col(4, int).astype(bool), seq_len)


def backfill_items(out, benches, record: dict) -> list:
    """Write ``items/<set>.tsv`` from ``per_file/<set>.tsv`` for each set of ``benches`` (with gold)
    that ``record`` (out's scores.json) holds as scored but that has no items file, as a step scored
    before slmjax-eval wrote them: the same per-file scores (written exactly), no model run.
    Returns the names written; a per_file table that cannot be read is said in the log and left."""
    out, done = Path(out), []
    for bench in benches:
        if (bench.submission_only or bench.name not in record.get("tasks", {})
                or (out / "items" / f"{bench.name}.tsv").exists()):
            continue
        path = out / "per_file" / f"{bench.name}.tsv"
        try:
            _write_items(out, bench, *_read_per_file(path))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            logging.warning("%s: cannot write items/%s.tsv from it (%s)", path, bench.name, describe(e))
            continue
        done.append(bench.name)
    return done


# headline key -> (task, metric)
HEADLINE = {**{task: (task, metric) for task, metric in rules.HEADLINE_METRIC.items()},
            "sblimp_item": ("sblimp", "item"), "swuggy_in_vocab": ("swuggy", "in_vocab")}


def headline(tasks: dict, convention: str = "mean") -> dict:
    """The usual number per task (sBLIMP macro, sWUGGY all, sSC/tSC accuracy), dev split first; a
    number without scored items (accuracy None) is left out, not taken from another split."""
    out, seen = {}, set()
    for name in sorted(tasks, key=lambda n: (tasks[n]["split"] != "dev", n)):
        entry = tasks[name]
        if entry["task"] in seen:
            continue
        seen.add(entry["task"])
        rows = {r["metric"]: r for r in entry["conventions"][convention]}
        for key, (task, metric) in HEADLINE.items():
            row = rows.get(metric) if task == entry["task"] else None
            if row and row["accuracy"] is not None:
                out[key] = {"benchmark": name, "metric": metric, "accuracy": row["accuracy"],
                            "ci95": row["ci95"], "n_items": row["n_items"]}
                if row.get("ci95_note"):
                    out[key]["ci95_note"] = row["ci95_note"]
    return out


def _warn_skipped(name: str, block: str, entry: dict, scores_path: Path):
    skipped = len(entry["skipped_files"])
    if not skipped:
        return
    lacking = "its submission files lack them: the official tools will refuse them"
    if block == "submission_only":   # the official tools refuse a submission that lacks a stem
        effect = lacking
    elif entry["n_pairs"]:
        effect = (f"{entry['n_pairs_dropped']} of {entry['n_pairs'] + entry['n_pairs_dropped']} "
                  f"pairs dropped, and {lacking}")
    else:
        effect = "no pair left: no score"
    log = logging.error if block == "submission_only" else logging.warning
    log("%s: %d of %d files skipped (unreadable, empty, silent or no units), %s; each one and why: "
        "%s.%s.skipped_files in %s", name, skipped, skipped + entry["n_files"], effect, block, name,
        scores_path)


def _null_for_nan(obj):
    """``obj`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _null_for_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_null_for_nan(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def evaluate_model(scorer, benches, encoded: dict, eos_id: int, out, meta: dict,
                   test_sets: dict | None = None, previous: dict | None = None) -> dict:
    """Score ``benches`` (with ``encoded[name] = (units, skipped)``), write ``out``, return the
    scores dict. ``test_sets``: name -> testloss.HeldOutSet for the test loss. ``previous``: the
    scores.json of the same model and settings to add to (its other sets and test losses kept); the
    writing host adds to scores.json as it is when written instead (see :func:`_save_scores`)."""
    from slmjax.analysis.zeroshot.testloss import heldout_loss
    out = Path(out)
    if previous is None and jax.process_index() == 0:
        _withdraw_other_record(out, meta)
    t0 = time.time()
    new = {"tasks": {}, "submission_only": {}, "test_loss": {}}
    n_tokens = 0
    for bench in benches:
        units, skipped = encoded[bench.name]
        stems, stats = score_benchmark(scorer, bench, units, eos_id)
        n_tokens += int(np.sum(stats.n_targets))
        write_submissions(out, bench, stems, stats)
        entry = new[bench.scores_block][bench.name] = summarize(bench, stems, stats, skipped)
        _warn_skipped(bench.name, bench.scores_block, entry, out / "scores.json")
    new["test_loss"] = {name: heldout_loss(scorer, t.path, t.split, holdout=t.holdout)
                        for name, t in (test_sets or {}).items()}
    timing = {"seconds": time.time() - t0, "scored_tokens": n_tokens}
    if jax.process_index() != 0:   # every host scores; one writes
        return _merged(previous or {}, new, timing, meta)
    return _save_scores(out, new, timing, meta, expected=previous is not None)


def _set_files(name: str, entry: dict) -> list:
    """The files (relative to the step folder) that a scores.json set ``name`` was written to."""
    submission = submission_file(str(entry.get("task")), entry.get("split") or "")
    files = [f"per_file/{name}.tsv", f"items/{name}.tsv"] + ([f"{conv}/{submission}" for conv in CONVENTIONS]
                                        if submission else [])
    return [f for f in files if ".." not in Path(f).parts]   # a hand-edited record: never outside


def _withdraw_other_record(out: Path, meta: dict) -> None:
    """Before a scoring that replaces ``out/scores.json`` (made with other SETTINGS, or unreadable)
    rewrites any file: remove it, then the files of its sets. Else a scoring killed after rewriting
    some submission files left the old record, which called the step scored with the old settings
    while its files held the new scores; and sets not scored again kept files no record described."""
    path = out / "scores.json"
    lock = _lock_scores(out / LOCK_NAME, path) if path.exists() else None
    try:
        try:
            record = fileio.read_json_object(path)
        except FileNotFoundError:
            return
        except (OSError, ValueError, fileio.NotAJSONObject):
            record = {}
        if (record and record_problem(record) is None
                and all(record.get(k) == meta.get(k) for k in SETTINGS)):
            return   # same settings: added to when written (another slmjax-eval of this step)
        path.unlink()
        for block in ("tasks", "submission_only"):
            entries = record.get(block, {}) if isinstance(record.get(block), dict) else {}
            for name, entry in entries.items():
                for rel in _set_files(str(name), entry if isinstance(entry, dict) else {}):
                    with contextlib.suppress(OSError):
                        (out / rel).unlink()
    finally:
        if lock is not None:
            lock.release()


def _save_scores(out: Path, new: dict, timing: dict, meta: dict, expected: bool) -> dict:
    """Add ``new`` to ``out/scores.json`` as it is now, under an flock on ``out/LOCK_NAME``: two
    slmjax-eval of one step (other --tasks) each read it before scoring, and the later writer
    dropped the other's sets. Only the read-merge-write is locked, so both still score at once.
    ``expected``: whether the caller meant to add to a record (else one of other settings is
    replaced without a word: the caller said so before scoring)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scores.json"
    lock = _lock_scores(out / LOCK_NAME, path)
    try:
        scores = _merged(_record_to_add_to(path, meta, expected), new, timing, meta)
        fileio.atomic_write_text(path, json.dumps(scores, indent=1, allow_nan=False) + "\n")
    finally:
        if lock is not None:
            lock.release()
    return scores


def _lock_scores(lock_path: Path, path: Path):
    """The flock on ``lock_path`` for writing ``path``; None (said in the log) when the lock file
    cannot be opened (another user's in a shared step folder): the scores are still written."""
    try:
        return fileio.PidLock(str(lock_path), wait_s=LOCK_WAIT_SECONDS, required=False,
                              on_wait=lambda pid: logging.warning(
                                  "waiting for pid %s to finish writing %s", pid, path))
    except fileio.LockHeld as e:
        raise ZeroShotError(f"{path}: {lock_path} {e} for {LOCK_WAIT_SECONDS:g} s; its "
                            "scores were not written") from None
    except OSError as e:
        logging.warning("%s cannot be opened (%s): %s is merged and written without it", lock_path,
                        describe(e), path)
        return None


def record_problem(record: dict) -> str | None:
    """What keeps the scores.json object ``record`` from being added to (None: nothing): its
    blocks not of the shape slmjax-eval writes, as in a file edited by hand or made by another
    tool, on which merging would stop with a traceback."""
    for block in ("tasks", "submission_only", "test_loss", "timing"):
        if not isinstance(record.get(block, {}), dict):
            return f"its {block!r} is not an object"
    for block in ("tasks", "submission_only", "test_loss"):
        for name, entry in record.get(block, {}).items():
            if not isinstance(entry, dict):
                return f"its {block}.{name} is not an object"
            if not isinstance(entry.get("directory", ""), str):
                return f"its {block}.{name}.directory is not a path"
    for name, entry in record.get("tasks", {}).items():
        rows = entry.get("conventions", {}).get("mean") if isinstance(
            entry.get("conventions"), dict) else None
        if (not isinstance(entry.get("task"), str) or not isinstance(entry.get("split"), str)
                or not isinstance(rows, list) or not all(
                    isinstance(r, dict) and {"metric", "accuracy", "ci95", "n_items"} <= set(r)
                    for r in rows)):
            return f"its tasks.{name} is not a scored set"
    timing = record.get("timing", {})
    if not all(isinstance(timing.get(k, 0), (int, float)) and not isinstance(timing.get(k, 0), bool)
               for k in ("seconds", "scored_tokens")):
        return "its 'timing' is not a number of seconds and tokens"
    return None


def _record_to_add_to(path: Path, meta: dict, expected: bool) -> dict:
    """The scores.json at ``path`` when it was made with the same SETTINGS as ``meta``, else {}
    (said in the log when ``expected``)."""
    try:
        record = fileio.read_json_object(path)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, fileio.NotAJSONObject) as e:
        record, why = {}, f"cannot be read ({describe(e)})"
    else:
        differs = [k for k in SETTINGS if record.get(k) != meta.get(k)]
        problem = record_problem(record)
        why = (f"cannot be read ({problem})" if problem else
               f"now holds scores of another {', '.join(differs)}" if differs else None)
    if why is None:
        return record
    if expected:   # changed while this one scored
        logging.warning("%s %s: written anew", path, why)
    return {}


def _merged(previous: dict, new: dict, timing: dict, meta: dict) -> dict:
    """The scores.json record: ``previous``'s sets and test losses, those of ``new`` replacing them."""
    # a set scored now leaves either block of the previous record (gold may come or go)
    rescored = set(new["tasks"]) | set(new["submission_only"])
    tasks, submission_only = ({**{n: e for n, e in previous.get(block, {}).items()
                                  if n not in rescored}, **new[block]}
                              for block in ("tasks", "submission_only"))
    before = previous.get("timing", {})
    seconds = timing["seconds"] + before.get("seconds", 0.0)
    n_tokens = timing["scored_tokens"] + before.get("scored_tokens", 0)
    scores = {"format_version": SCORES_VERSION, **meta,
              "accuracy_unit": "fraction of items in [0, 1]; chance 0.5",
              "conventions": list(CONVENTIONS), "headline_convention": "mean",
              "headline": headline(tasks), "tasks": tasks, "submission_only": submission_only,
              "test_loss": {**previous.get("test_loss", {}), **new["test_loss"]},
              "timing": {"seconds": seconds, "scored_tokens": n_tokens,
                         "tokens_per_sec": n_tokens / max(seconds, 1e-9)}}
    return _null_for_nan(scores)
