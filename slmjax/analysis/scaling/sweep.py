"""Build a run table from a sweep root: one workdir per run (run.json, metrics.jsonl, zeroshot/).

A run enters the table when it finished (status ``completed``) and its schedule ended at its planned
budget D (last logged ``tokens_seen`` within 1% of ``tokens``); other workdirs are recorded in
``table.excluded`` with the reason. Downstream accuracies come from ``zeroshot/<step>/scores.json`` of
the final checkpoint only. A run.json that is not a JSON object, or a run with no finite test loss,
is excluded too; a field that is not a number is one clear error.

D and C of a packed run (run.json ``data.mode`` ``packed``): its rows hold padding (target weight
0), so run.json's ``tokens`` (steps x batch slots) overstates the tokens it trained on. D is the
utterance tokens trained on, run.json's ``trained_tokens`` (counted exactly by the trainer), or for
a run from before run.json recorded it, ``epochs`` x ``unique_tokens`` (epoch 0's mean utterance
tokens per row times the rows trained: off by the few rows' worth a partial epoch's rows differ
from that mean). D sets epochs (D/U), R_D and tokens per parameter. The compute counts every slot
the model processed: the ``flops`` column (C_6N_attn) is ``6n_attn`` x ``tokens``, padding
included, while C_6N and C_6N_nonemb stay 6ND of that D, the law's identity (Approach 2 and the
allocation use C = 6ND): for a packed run they leave out the padding's compute, which
``--flops=6N_attn`` counts. Its last logged ``tokens_seen`` (slots) is scaled by D / ``tokens``
for the schedule check. A windows run has no padding: D is ``tokens``, as before.
"""

from __future__ import annotations

import json
import math
import os

from slmjax import fileio
from slmjax.analysis.scaling import items as item_scores
from slmjax.analysis.scaling.errors import FitInputError
from slmjax.analysis.scaling.table import RunTable, _num, build_table

ACC_KEYS = ("accuracy_macro", "macro_accuracy", "macro", "accuracy", "acc", "score")
N_KEYS = ("n_items", "n_pairs", "n", "items", "count")
TASK_NAMES = {"tstorycloze": "tsc", "sstorycloze": "ssc", "topic_storycloze": "tsc",
              "spoken_storycloze": "ssc", "lexical": "swuggy", "syntactic": "sblimp"}


def _field(obj, key, what, where):
    """``obj[key]`` as a float, None when absent or null; one clear error when not a number."""
    value = obj.get(key)
    return None if value is None else _num(value, what + key, where)


def _last_metrics(path, where):
    """(last tokens_seen, last test_loss) from metrics.jsonl, None when never logged.

    Lines that are not a JSON object are skipped (a killed writer leaves a partial line).
    """
    tokens_seen = loss = None
    if not os.path.isfile(path):
        return tokens_seen, loss
    with open(path, errors="replace") as f:
        for i, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                what = f"metrics.jsonl line {i} "
                seen_i, loss_i = (_field(row, k, what, where) for k in ("tokens_seen", "test_loss"))
                tokens_seen = tokens_seen if seen_i is None else seen_i
                loss = loss if loss_i is None else loss_i
    return tokens_seen, loss


def _load_object(path):
    """(the JSON object in ``path``, None) or (None, why it is unusable)."""
    try:
        return fileio.read_json_object(path), None
    except (OSError, ValueError) as e:
        return None, f"unreadable ({type(e).__name__})"
    except fileio.NotAJSONObject as e:
        return None, f"not a JSON object (a {e.kind})"


def _packed_tokens(num, unique):
    """(D, None) from a packed run's trained_tokens; (D, how) from an older run.json without it
    (epochs x unique_tokens), or (None, why) when it has neither (D then stays ``tokens``)."""
    trained = num("trained_tokens")
    if trained is not None:
        return trained, None
    epochs = num("epochs")
    if epochs is not None and unique is not None:
        return (epochs * unique, "run.json has no trained_tokens (written before it was recorded): "
                "D = epochs x unique_tokens, epoch 0's mean utterance tokens per row times the rows "
                "trained (exact over whole epochs of epoch 0's row count)")
    return None, ("run.json has neither trained_tokens nor epochs and unique_tokens: D is its tokens, "
                  "padding included (overstated)")


def _task_name(key: str) -> str:
    return TASK_NAMES.get(key.lower(), key.lower())


def _scores(obj):
    """task -> (accuracy, n items) from a scores.json object (tolerant of nesting and naming)."""
    for key in ("headline", "benchmarks", "scores", "tasks"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
    out = {}
    for task, val in obj.items():
        name = _task_name(task)
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
    source = os.path.basename(os.path.normpath(root))
    rows, excluded, notes = [], [], []
    eval_tokens = {}   # run id -> held-out tokens of its final test loss
    packed, packed_notes = [], []   # packed runs' ids; how D was taken where not trained_tokens
    workdir_of = {}    # run id -> workdir name
    run_items, item_problems = {}, {}   # run id -> items.read_run's outcomes, its problems
    for name in sorted(os.listdir(root)):
        wd = os.path.join(root, name)
        rj = os.path.join(wd, "run.json")
        if not os.path.isfile(rj):
            continue
        run, why = _load_object(rj)
        if run is None:
            excluded.append((name, f"run.json {why}"))
            continue
        rid = str(run.get("run_id") or name)
        status = run.get("status", "unknown")
        if status != "completed":
            excluded.append((rid, f"status {status}"))
            continue
        if rid in workdir_of:
            raise FitInputError(f"{source}: run_id {rid!r} completed in workdirs {workdir_of[rid]} and {name}; "
                                "remove the copy or give it its own run_id")
        workdir_of[rid] = name
        where = f"{source} run {rid}"
        num = lambda key: _field(run, key, "run.json ", where)
        seen, last_loss = _last_metrics(os.path.join(wd, "metrics.jsonl"), where)
        loss = num("final_test_loss")
        loss = last_loss if loss is None else loss
        if loss is None or not math.isfinite(loss):
            excluded.append((rid, "no test loss in run.json or metrics.jsonl" if loss is None
                             else f"test loss is {loss:g}"))
            continue
        fpt = run.get("flops_per_token") or {}
        if not isinstance(fpt, dict):
            raise FitInputError(f"{where}: run.json flops_per_token {fpt!r} is not an object")
        slots, unique = num("tokens"), num("unique_tokens")
        tokens = slots
        data = run.get("data")
        if isinstance(data, dict) and data.get("mode") == "packed":
            tokens, how = _packed_tokens(num, unique)
            packed.append(rid)
            if how:
                packed_notes.append(f"{rid}: {how}")
            if tokens is None:
                tokens = slots
            elif seen is not None and slots:
                seen = seen * tokens / slots   # logged in slots: the schedule check in D's units
        # run.json's unique_tokens is the size of the training data; a run that stops within its
        # first epoch has seen only D of them, all unique.
        if unique is not None and tokens is not None:
            unique = min(unique, tokens)
        row = {"run_id": rid, "n_params": num("n_params"), "tokens": tokens, "test_loss": loss,
               "n_params_nonemb": num("n_params_nonemb"), "unique_tokens": unique, "tokens_seen": seen}
        attn = _field(fpt, "6n_attn", "run.json flops_per_token.", where)
        if attn is not None and slots is not None:
            row["flops"] = attn * slots   # every slot processed, a packed row's padding included
        zdir = os.path.join(wd, "zeroshot")
        steps = sorted(int(s) for s in os.listdir(zdir) if s.isdigit()) if os.path.isdir(zdir) else []
        final = num("steps")
        if steps and final is not None and steps[-1] != final:
            notes.append(f"{rid}: zero-shot scores only for step {steps[-1]}, not the final step {final:.15g}; "
                         "downstream ignored")
        elif steps:
            step_dir = os.path.join(zdir, str(steps[-1]))
            scores, why = _load_object(os.path.join(step_dir, "scores.json"))
            if scores is None:
                notes.append(f"{rid}: scores.json {why}; downstream ignored")
            else:
                for task, (a, n) in _scores(scores).items():
                    row[f"acc_{task}"], row[f"n_{task}"] = a, n
                run_items[rid], item_problems[rid] = item_scores.read_run(step_dir, scores, _task_name)
        rows.append({k: ("" if v is None else v) for k, v in row.items()})
        eval_tokens[rid] = num("final_test_tokens")
    if packed:
        notes.append(f"{len(packed)} packed run(s) ({', '.join(packed[:5])}{', ...' if len(packed) > 5 else ''}): "
                     "D is the utterance tokens trained on (run.json trained_tokens, padding excluded); "
                     "C_6N_attn counts every slot processed (6n_attn x run.json tokens, padding "
                     "included); C_6N and C_6N_nonemb are 6ND of that D")
        notes.extend(packed_notes)
    if len(set(eval_tokens.values())) > 1:
        counts = ", ".join(f"{r}: {'?' if n is None else f'{n:.15g}'}" for r, n in sorted(eval_tokens.items()))
        notes.append("final test losses cover different numbers of held-out tokens (? = a run from "
                     "before run.json recorded it); rerun their final evaluation to compare like "
                     f"with like: {counts}")
    if not rows:
        raise FitInputError(f"{root}: no completed runs (no workdir with run.json and status completed)")
    table = build_table(rows, source, excluded=excluded, notes=notes, **kw)
    table.items, item_notes = item_scores.assemble(list(table.run_id), table.acc, run_items, item_problems)
    table.notes.extend(item_notes)
    return table


def read_runs(path: str, experiment: str | None = None, **kw) -> RunTable:
    """A CSV file or a sweep root, whichever ``path`` is."""
    from slmjax.analysis.scaling.table import read_csv
    if os.path.isfile(path):
        return read_csv(path, experiment=experiment, **kw)
    if experiment is not None and os.path.isdir(path):
        raise FitInputError(f"{path}: --experiment={experiment} picks rows of a CSV's experiment column; "
                            "a sweep root has none (point --runs at the experiment's own root)")
    return read_sweep(path, **kw)
