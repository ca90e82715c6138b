"""Build a run table from a sweep root: one workdir per run (run.json, metrics.jsonl, zeroshot/).

A run enters the table when it finished (status ``completed``) and its schedule ended at its planned
budget D (last logged ``tokens_seen`` within 1% of ``tokens``); other workdirs are recorded in
``table.excluded`` with the reason. Downstream accuracies come from ``zeroshot/<step>/scores.json`` of
the final checkpoint only.
"""

from __future__ import annotations

import json
import math
import os

from slmjax.analysis.scaling.errors import FitInputError
from slmjax.analysis.scaling.table import RunTable, build_table

ACC_KEYS = ("accuracy_macro", "macro_accuracy", "macro", "accuracy", "acc", "score")
N_KEYS = ("n_items", "n_pairs", "n", "items", "count")
TASK_NAMES = {"tstorycloze": "tsc", "sstorycloze": "ssc", "topic_storycloze": "tsc",
              "spoken_storycloze": "ssc", "lexical": "swuggy", "syntactic": "sblimp"}


def _last_metrics(path):
    """(last tokens_seen, last test_loss) from metrics.jsonl; corrupt lines are skipped."""
    tokens_seen, loss = math.nan, math.nan
    if not os.path.isfile(path):
        return tokens_seen, loss
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "tokens_seen" in row:
                tokens_seen = float(row["tokens_seen"])
            if row.get("test_loss") is not None:
                loss = float(row["test_loss"])
    return tokens_seen, loss


def _scores(obj):
    """task -> (accuracy, n items) from a scores.json object (tolerant of nesting and naming)."""
    for key in ("headline", "benchmarks", "scores", "tasks"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
    out = {}
    for task, val in obj.items():
        name = TASK_NAMES.get(task.lower(), task.lower())
        if isinstance(val, (int, float)):
            out[name] = (float(val), math.nan)
        elif isinstance(val, dict):
            acc = next((val[k] for k in ACC_KEYS if isinstance(val.get(k), (int, float))), None)
            if acc is None:
                continue
            n = next((val[k] for k in N_KEYS if isinstance(val.get(k), (int, float))), math.nan)
            out[name] = (float(acc), float(n))
    return out


def read_sweep(root: str, **kw) -> RunTable:
    """Run table from every workdir under ``root`` that holds a run.json."""
    if not os.path.isdir(root):
        raise FitInputError(f"{root}: not a directory or CSV file")
    rows, excluded, notes = [], [], []
    eval_tokens = {}   # run id -> held-out tokens of its final test loss
    for name in sorted(os.listdir(root)):
        wd = os.path.join(root, name)
        rj = os.path.join(wd, "run.json")
        if not os.path.isfile(rj):
            continue
        try:
            with open(rj) as f:
                run = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            excluded.append((name, f"run.json unreadable ({type(e).__name__})"))
            continue
        rid = str(run.get("run_id") or name)
        status = run.get("status", "unknown")
        if status != "completed":
            excluded.append((rid, f"status {status}"))
            continue
        seen, last_loss = _last_metrics(os.path.join(wd, "metrics.jsonl"))
        loss = run.get("final_test_loss")
        loss = last_loss if loss is None else loss
        fpt = run.get("flops_per_token") or {}
        # run.json's unique_tokens is the size of the training data; a run that stops within its
        # first epoch has seen only D of them, all unique.
        unique = run.get("unique_tokens")
        if unique is not None and run.get("tokens") is not None:
            unique = min(float(unique), float(run["tokens"]))
        row = {"run_id": rid, "n_params": run.get("n_params"), "tokens": run.get("tokens"),
               "test_loss": loss, "n_params_nonemb": run.get("n_params_nonemb"),
               "unique_tokens": unique, "tokens_seen": seen}
        if fpt.get("6n_attn") is not None and run.get("tokens") is not None:
            row["flops"] = float(fpt["6n_attn"]) * float(run["tokens"])
        if row["test_loss"] is None:
            excluded.append((rid, "no test loss in run.json or metrics.jsonl"))
            continue
        zdir = os.path.join(wd, "zeroshot")
        steps = sorted(int(s) for s in os.listdir(zdir) if s.isdigit()) if os.path.isdir(zdir) else []
        final = run.get("steps")
        if steps and final is not None and steps[-1] != int(final):
            notes.append(f"{rid}: zero-shot scores only for step {steps[-1]}, not the final step {final}; "
                         "downstream ignored")
        elif steps:
            try:
                with open(os.path.join(zdir, str(steps[-1]), "scores.json")) as f:
                    for task, (a, n) in _scores(json.load(f)).items():
                        row[f"acc_{task}"], row[f"n_{task}"] = a, n
            except (OSError, json.JSONDecodeError) as e:
                notes.append(f"{rid}: scores.json unreadable ({type(e).__name__}); downstream ignored")
        rows.append({k: ("" if v is None else v) for k, v in row.items()})
        eval_tokens[rid] = run.get("final_test_tokens")
    if len(set(eval_tokens.values())) > 1:
        counts = ", ".join(f"{r}: {'?' if n is None else n}" for r, n in sorted(eval_tokens.items()))
        notes.append("final test losses cover different numbers of held-out tokens (? = a run from "
                     "before run.json recorded it); rerun their final evaluation to compare like "
                     f"with like: {counts}")
    if not rows:
        raise FitInputError(f"{root}: no completed runs (no workdir with run.json and status completed)")
    return build_table(rows, os.path.basename(os.path.normpath(root)), excluded=excluded, notes=notes, **kw)


def read_runs(path: str, experiment: str | None = None, **kw) -> RunTable:
    """A CSV file or a sweep root, whichever ``path`` is."""
    from slmjax.analysis.scaling.table import read_csv
    if os.path.isfile(path):
        return read_csv(path, experiment=experiment, **kw)
    return read_sweep(path, **kw)
