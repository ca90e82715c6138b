"""Aggregation of per-file scores into accuracies, by the official rules (BENCHMARKS.md).

A pair scores 1 when the correct file has the higher score, 0.5 on a tie, 0 otherwise. Pairs are first
averaged over voices within an item (sWUGGY: word id; sBLIMP: (type, subtype, id); StoryCloze: one
pair per item), then:
  sWUGGY  - ``all``: mean over items; ``in_vocab``: items with frequency > 0; frequency bands.
  sBLIMP  - ``item``: mean over items (leaderboard); ``macro``: mean of the 12 per-type means (paper).
  sSC/tSC - ``accuracy`` over pairs, and the tie rate.
95% intervals: percentile bootstrap over items (stratified by type for the macro mean). A row with
no items has accuracy, ci95 and tie_rate None (null in scores.json, which has no NaN). A row whose
items are too few to bootstrap (fewer than 2 items, or for the macro mean a type with fewer than 2)
has ci95 None and a ``ci95_note`` saying why (see :func:`_interval`); its accuracy stands.
"""

from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass
class Items:
    """Per item, in first-seen order: mean outcome over its voices, its ties and pairs, and its
    first pair (which carries the item's type and frequency)."""
    means: np.ndarray
    ties: np.ndarray
    n_pairs: np.ndarray
    first: list


def items_of(pairs, scores) -> Items:
    """Pair outcomes (see :func:`pair_outcomes`) gathered by item."""
    out = pair_outcomes(pairs, scores)
    first = {}
    for p in pairs:
        first.setdefault(p.item, p)
    index = {item: i for i, item in enumerate(first)}
    idx = np.array([index[p.item] for p in pairs], np.int64)
    n_pairs = np.bincount(idx, minlength=len(index))
    return Items(np.bincount(idx, out, len(index)) / np.maximum(n_pairs, 1),
                 np.bincount(idx, out == 0.5, len(index)), n_pairs, list(first.values()))


MIN_ITEMS = 2   # per stratum: resampling one item always draws it, so it shows no variance


def too_few(values, groups=None):
    """Why a bootstrap interval of ``values`` cannot be estimated (see :func:`_interval`), or None."""
    if groups is None:
        if len(values) < MIN_ITEMS:
            return (f"not estimable: a bootstrap over items needs at least {MIN_ITEMS} items; "
                    f"this row has {len(values)}")
        return None
    kinds, counts = np.unique(groups, return_counts=True)
    short = [str(k) for k, c in zip(kinds, counts) if c < MIN_ITEMS]
    if short:
        return (f"not estimable: a bootstrap stratified by type needs at least {MIN_ITEMS} items of "
                f"every type; {len(short)} of {len(kinds)} types have fewer: {', '.join(short)}")
    return None


def _interval(stat, values, groups=None, seed=0):
    """95% percentile bootstrap interval of ``stat`` over items (resampled within groups), or None
    when it cannot be estimated.

    ``N_BOOTSTRAP`` replicates from ``numpy.random.default_rng(seed)``: each draws, group by group
    in sorted order, as many items with replacement as the group has. A bootstrap needs at least
    ``MIN_ITEMS`` (2) items in every set it resamples: all the items when ``groups`` is None, every
    group (stratum) otherwise. Resampling a single item always draws that item, so a one-item row,
    or a one-item type in the stratified macro mean, adds no variance at all: with one item per type
    the macro interval would have zero width (e.g. [0.5, 0.5]), a certainty the data do not give,
    and one such type among larger ones would make it too narrow by an unknown amount. Such an
    interval is None (null in scores.json; the row's ``ci95_note`` names the types lacking items).

    An unstratified bootstrap over items is not used as a fallback: the macro mean weights the
    (fixed) types equally, so its sampling variance is the sum over types of within-type variance
    / items of the type, over the squared number of types, and one item of a type says nothing
    about that type's variance. Pooling items across types would assume that every type has the
    same item-level spread, and a replicate that drew no item of some type would compute another
    statistic (a mean over fewer types). An interval can still have zero width when every item of
    a row has the same outcome: that is what the items show.
    """
    if too_few(values, groups) is not None:
        return None
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


def _row(metric, items: Items, sel=None, stat=_mean, groups=None, **extra):
    """One metric over the items ``sel`` (all when None; ``groups``: per item, for the macro
    mean); its tie rate is over their pairs. A row with too few items for an interval has ci95
    None and ``ci95_note``, the reason (see :func:`_interval`)."""
    sel = np.ones(len(items.means), bool) if sel is None else sel
    values = items.means[sel]
    if len(values) == 0:
        return dict(metric=metric, n_items=0, accuracy=None, ci95=None, tie_rate=None, **extra)
    note = too_few(values, groups)
    row = dict(metric=metric, n_items=int(len(values)), accuracy=stat(values, groups),
               ci95=None if note else _interval(stat, values, groups),
               tie_rate=float(items.ties[sel].sum() / items.n_pairs[sel].sum()), **extra)
    if note:
        row["ci95_note"] = note
    return row


def score_swuggy(pairs, scores) -> list:
    """Rows: ``all``, ``in_vocab`` and one per frequency band (items of unknown frequency: only
    ``all``)."""
    items = items_of(pairs, scores)
    freq = np.array([np.nan if p.frequency is None else p.frequency for p in items.first],
                    np.float64)
    rows = [_row("all", items), _row("in_vocab", items, freq > 0)]
    for name, lo, hi in FREQUENCY_BANDS:
        sel = (freq >= lo) & (freq < hi)
        if sel.any():
            rows.append(_row(f"frequency/{name}", items, sel))
    return rows


def score_sblimp(pairs, scores) -> list:
    """Rows: ``item`` (leaderboard), ``macro`` (mean of per-type means: the paper), per type."""
    items = items_of(pairs, scores)
    types = np.array([p.group for p in items.first])
    rows = [_row("item", items),
            _row("macro", items, stat=_macro, groups=types, n_types=len(set(types)))]
    for t in sorted(set(types)):
        rows.append(_row(f"type/{t}", items, types == t))
    return rows


def score_storycloze(pairs, scores) -> list:
    """One row: accuracy over pairs (ties count 0.5) with the tie rate."""
    return [_row("accuracy", items_of(pairs, scores))]


RULES = {"swuggy": score_swuggy, "sblimp": score_sblimp, "ssc": score_storycloze,
         "tsc": score_storycloze}

# The number each task is usually quoted by.
HEADLINE_METRIC = {"swuggy": "all", "sblimp": "macro", "ssc": "accuracy", "tsc": "accuracy"}


def aggregate(task, pairs, scores) -> list:
    """Accuracy rows for ``task`` (see module doc), each with the tie rate of its own pairs."""
    return RULES[task](pairs, scores)
