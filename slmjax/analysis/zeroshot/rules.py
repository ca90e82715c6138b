"""Aggregation of per-file scores into accuracies, by the official rules (BENCHMARKS.md).

A pair scores 1 when the correct file has the higher score, 0.5 on a tie, 0 otherwise. Pairs are first
averaged over voices within an item (sWUGGY: word id; sBLIMP: (type, subtype, id); StoryCloze: one
pair per item), then:
  sWUGGY  - ``all``: mean over items; ``in_vocab``: items with frequency > 0; frequency bands.
  sBLIMP  - ``item``: mean over items (leaderboard); ``macro``: mean of the 12 per-type means (paper).
  sSC/tSC - ``accuracy`` over pairs, and the tie rate.
95% intervals: percentile bootstrap over items (stratified by type for the macro mean). A row with
no items has accuracy, ci95 and tie_rate None (null in scores.json, which has no NaN).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

# Word-frequency bands of the ZeroSpeech 2021 lexical analysis (counts in the LibriLight training set):
# its script cuts at 0, 1, 5, 20, 100 with half-open [lo, hi) bins, so despite their labels "1-5"
# holds counts 1-4, "6-20" 5-19, "21-100" 20-99 and ">100" 100 and above. Kept as it is, so that
# band rows match the official ones.
FREQUENCY_BANDS = (("oov", 0, 1), ("1-5", 1, 5), ("6-20", 5, 20), ("21-100", 20, 100),
                   (">100", 100, np.inf))
N_BOOTSTRAP = 1000


def pair_outcomes(pairs, scores) -> np.ndarray:
    """1 / 0.5 / 0 per pair from ``scores`` (stem -> float)."""
    pos = np.array([scores[p.pos] for p in pairs], dtype=np.float64)
    neg = np.array([scores[p.neg] for p in pairs], dtype=np.float64)
    return (pos > neg) + 0.5 * (pos == neg)


def item_means(pairs, outcomes):
    """Mean outcome over voices per item: (items in first-seen order, means, first pair per item)."""
    sums, counts, first = {}, defaultdict(int), {}
    for p, o in zip(pairs, outcomes):
        if p.item not in sums:
            sums[p.item], first[p.item] = 0.0, p
        sums[p.item] += o
        counts[p.item] += 1
    items = list(sums)
    return items, np.array([sums[i] / counts[i] for i in items]), [first[i] for i in items]


def _interval(stat, values, groups=None, seed=0):
    """95% percentile bootstrap interval of ``stat`` over items (resampled within groups)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        boots = np.array([stat(values[rng.integers(0, len(values), len(values))], None)
                          for _ in range(N_BOOTSTRAP)])
    else:
        members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        boots = []
        for _ in range(N_BOOTSTRAP):
            idx = np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
            boots.append(stat(values[idx], groups[idx]))
        boots = np.array(boots)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return [float(lo), float(hi)]


def _mean(values, _groups):
    return float(np.mean(values))


def _macro(values, groups):
    return float(np.mean([values[groups == g].mean() for g in np.unique(groups)]))


def _row(metric, values, stat=_mean, groups=None, **extra):
    if len(values) == 0:
        return dict(metric=metric, n_items=0, accuracy=None, ci95=None, **extra)
    return dict(metric=metric, n_items=int(len(values)), accuracy=stat(values, groups),
                ci95=_interval(stat, values, groups), **extra)


def score_swuggy(pairs, scores) -> list:
    """Rows: ``all``, ``in_vocab`` and one per frequency band (items of unknown frequency: only
    ``all``)."""
    out = pair_outcomes(pairs, scores)
    _, means, first = item_means(pairs, out)
    freq = np.array([np.nan if p.frequency is None else p.frequency for p in first], np.float64)
    rows = [_row("all", means), _row("in_vocab", means[freq > 0])]
    for name, lo, hi in FREQUENCY_BANDS:
        sel = (freq >= lo) & (freq < hi)
        if sel.any():
            rows.append(_row(f"frequency/{name}", means[sel]))
    return rows


def score_sblimp(pairs, scores) -> list:
    """Rows: ``item`` (leaderboard), ``macro`` (mean of per-type means: the paper), per type."""
    out = pair_outcomes(pairs, scores)
    _, means, first = item_means(pairs, out)
    types = np.array([p.group for p in first])
    rows = [_row("item", means), _row("macro", means, _macro, types, n_types=len(set(types)))]
    for t in sorted(set(types)):
        rows.append(_row(f"type/{t}", means[types == t]))
    return rows


def score_storycloze(pairs, scores) -> list:
    """One row: accuracy over pairs (ties count 0.5) with the tie rate."""
    out = pair_outcomes(pairs, scores)
    _, means, _ = item_means(pairs, out)
    return [_row("accuracy", means, tie_rate=float(np.mean(out == 0.5)) if len(out) else None)]


RULES = {"swuggy": score_swuggy, "sblimp": score_sblimp, "ssc": score_storycloze,
         "tsc": score_storycloze}

# The number each task is usually quoted by.
HEADLINE_METRIC = {"swuggy": "all", "sblimp": "macro", "ssc": "accuracy", "tsc": "accuracy"}


def aggregate(task, pairs, scores) -> list:
    """Accuracy rows for ``task`` (see module doc); ties are also counted for every task."""
    rows = RULES[task](pairs, scores)
    ties = float(np.mean(pair_outcomes(pairs, scores) == 0.5)) if pairs else None
    for r in rows:
        r.setdefault("tie_rate", ties)
    return rows
