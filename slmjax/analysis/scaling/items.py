"""Benchmark items shared by the runs, for a downstream bootstrap that redraws them.

Every run of a sweep is scored on the same benchmark items, so its accuracy is an estimate from one
finite item set, and the item noise is shared: an item that every model finds hard lowers every
run's accuracy together. A bootstrap over runs sees the runs' scatter about their fitted curve (so
gamma's spread, the runs' own item noise included) but not that shared shift of the accuracy level,
which moves c0, the sigmoid ceiling and the compute to a target. Where every scored run has its
items (slmjax-eval's ``items/<benchmark>.tsv``), a replicate redraws the items, once for all runs
(stratified by sBLIMP type for the macro mean, as slmjax-eval's own intervals are), and rescores
every run on them. slmjax-fit's default (``shared``) redraws the runs and moves every run's own
accuracy by the shift of the runs' mean on the redrawn items (``shared_shift``): the shared part
alone, as the runs' own item noise is in their scatter already. ``both`` uses the rescored
accuracies with the runs redrawn, which counts that noise twice (conservative); ``items`` holds the
runs fixed. tools/calibrate_downstream_bootstrap.py measures each against a known truth.
"""

from __future__ import annotations

import dataclasses
import os
import zlib

import numpy as np

from slmjax.analysis.zeroshot.itemfile import parse_items_tsv
from slmjax.analysis.zeroshot.rules import too_few

ACC_TOLERANCE = 1e-9   # an items file agrees with its scores.json accuracy to rounding


@dataclasses.dataclass
class ItemScores:
    """One task's item outcomes: ``values`` (runs, items), NaN rows for runs without a score;
    ``groups`` the items' types (strata of the ``macro`` stat), ``stat`` ``mean`` or ``macro``."""
    benchmark: str
    stat: str
    groups: np.ndarray
    values: np.ndarray

    @property
    def n_items(self) -> int:
        return self.values.shape[1]

    def take(self, idx) -> "ItemScores":
        return dataclasses.replace(self, values=self.values[np.asarray(idx)])


def read_run(step_dir: str, scores: dict, task_name) -> tuple[dict, dict]:
    """({task: (benchmark, keys, types, outcomes, stat)}, {task: problem}) for the headline numbers
    of a step's scores.json object ``scores``; ``task_name`` maps a headline key to the table's
    task. A headline set without a readable items file is a problem (its runs are then not redrawn
    by item), as is one whose items do not give its accuracy."""
    head = scores.get("headline")
    conv = scores.get("headline_convention", "mean")
    out, problems, parsed = {}, {}, {}
    for key, entry in (head.items() if isinstance(head, dict) else ()):
        if not isinstance(entry, dict) or not isinstance(entry.get("benchmark"), str):
            continue
        task, bench, metric = task_name(key), entry["benchmark"], entry.get("metric")
        name = f"items/{bench}.tsv"
        if bench not in parsed:
            parsed[bench] = _parse(os.path.join(step_dir, "items", f"{bench}.tsv"), name, bench)
        items = parsed[bench]
        if isinstance(items, str):
            problems[task] = items
            continue
        picked = items.metric(metric) if isinstance(metric, str) else None
        if picked is None or not isinstance(conv, str) or conv not in items.outcomes:
            problems[task] = f"{name} has no {conv} outcomes of metric {metric!r}"
            continue
        keys, types, stat = picked
        values = items.values(conv, keys)
        acc = entry.get("accuracy")
        if (not keys or not isinstance(acc, (int, float))
                or abs(statistic(values[None], types, stat)[0] - acc) > ACC_TOLERANCE):
            problems[task] = f"{name} does not give scores.json's {metric} accuracy {acc}"
            continue
        out[task] = (bench, keys, types, values, stat)
    return out, problems


def _parse(path: str, name: str, bench: str):
    """The ItemFile at ``path``, or the one line that says why there is none."""
    if "/" in bench or os.sep in bench or bench.startswith(".") or not os.path.isfile(path):
        return (f"no {name} (scored before slmjax-eval wrote item outcomes: slmjax-eval run on that "
                "step again writes them from its per_file/ tables)")
    try:
        with open(path, encoding="utf-8") as f:
            return parse_items_tsv(f.read())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return f"{name} unreadable ({e})"


def statistic(values, groups, stat: str, weights=None) -> np.ndarray:
    """Accuracy of each row of ``values`` (runs, items) with item resample counts ``weights``
    (replicates, items; None = each item once): (replicates, runs), or (runs,) without weights.
    ``mean``: the weighted mean over items; ``macro``: the mean over types of each type's weighted
    mean (a stratified redraw keeps every type's count)."""
    one = weights is None
    w = np.ones((1, values.shape[1])) if one else np.asarray(weights, np.float64)
    if stat == "mean":
        out = (w @ values.T) / w.sum(1, keepdims=True)
    elif stat == "macro":
        per = [(w[:, groups == g] @ values[:, groups == g].T) / w[:, groups == g].sum(1, keepdims=True)
               for g in np.unique(groups)]
        out = np.mean(per, axis=0)
    else:
        raise ValueError(f"unknown item statistic {stat!r}")
    return out[0] if one else out


def assemble(run_ids, acc: dict, per_run: dict, problems: dict) -> tuple[dict, list]:
    """({task: ItemScores}, notes) for a table's runs (``run_ids`` in table order, ``acc`` its
    task -> (accuracy, n) columns): a task gets item scores when every run with a finite accuracy
    brought items of one benchmark with one key set, enough of them to redraw (``rules.too_few``); else
    a note says why its runs are not redrawn by item. ``per_run``, ``problems``: run id ->
    read_run's two dicts."""
    out, notes = {}, []
    for task, (a, _n) in acc.items():
        scored = [i for i in range(len(run_ids)) if np.isfinite(a[i])]
        why = None
        first = None
        for i in scored:
            rid = run_ids[i]
            got = per_run.get(rid, {}).get(task)
            if got is None:
                why = f"run {rid}: {problems.get(rid, {}).get(task, 'no items file')}"
                break
            if first is None:
                first = got
            elif got[0] != first[0] or got[4] != first[4] or set(got[1]) != set(first[1]):
                why = (f"runs {run_ids[scored[0]]} and {rid} were scored on different items "
                       f"({first[0]}, {len(first[1])} items; {got[0]}, {len(got[1])} items)")
                break
        if not scored:
            continue
        if why is None:   # as slmjax-eval's intervals: a lone item (of a type) is always redrawn
            short = too_few(first[1], np.asarray(first[2], dtype=object) if first[4] == "macro" else None)
            why = short and f"{first[0]}: {short}"
        if why:
            notes.append(f"downstream {task}: the bootstrap redraws runs only, not items: {why}")
            continue
        bench, keys, types, _, stat = first
        values = np.full((len(run_ids), len(keys)), np.nan)
        for i in scored:
            _, k, _, v, _ = per_run[run_ids[i]][task]
            index = {key: j for j, key in enumerate(k)}
            values[i] = v[[index[key] for key in keys]]
        out[task] = ItemScores(bench, stat, np.asarray(types, dtype=object), values)
    return out, notes


CHUNK = 100   # replicates redrawn at a time: (CHUNK, items) counts stay small for 40k-item sets


def _count_chunks(items: ItemScores, reps: int, seed: int, task: str):
    """Item resample counts, CHUNK replicates at a time ((k, items) arrays)."""
    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
    n = items.n_items
    groups = ([np.arange(n)] if items.stat == "mean" else
              [np.flatnonzero(items.groups == g) for g in np.unique(items.groups)])
    for lo in range(0, reps, CHUNK):
        k = min(CHUNK, reps - lo)
        flat = np.zeros(k * n)
        for g in groups:
            picks = g[rng.integers(0, len(g), (k, len(g)))] + n * np.arange(k)[:, None]
            flat += np.bincount(picks.ravel(), minlength=k * n)
        yield flat.reshape(k, n)


def draw(items: ItemScores, reps: int, seed: int, task: str) -> np.ndarray:
    """(reps, items) resample counts: each replicate draws as many items as there are, with
    replacement, from all of them (``mean``) or within each type (``macro``), from a stream of
    its own per task (adding a task changes no other's)."""
    return np.concatenate(list(_count_chunks(items, reps, seed, task)) or [np.zeros((0, items.n_items))])


def replicate_accuracies(items: ItemScores, reps: int, seed: int, task: str) -> np.ndarray:
    """(reps, runs) accuracies of every run on each replicate's redrawn items (the counts of
    ``draw``; NaN where a run has no score)."""
    parts = [statistic(items.values, items.groups, items.stat, V)
             for V in _count_chunks(items, reps, seed, task)]
    return np.concatenate(parts) if parts else np.zeros((0, len(items.values)))


def shared_shift(A, acc) -> np.ndarray:
    """(reps, runs): each run's own accuracy ``acc`` moved by its replicate's shared shift, the mean
    over the scored runs of A - acc (A: replicate_accuracies). The runs' own item noise, which a
    redraw of the runs already sees in their scatter, averages out of the shift; the part every
    run shares (how hard the drawn items are) stays."""
    acc = np.asarray(acc, np.float64)
    ok = np.isfinite(acc)
    shift = (A[:, ok] - acc[ok]).mean(1, keepdims=True)
    return acc[None] + shift
