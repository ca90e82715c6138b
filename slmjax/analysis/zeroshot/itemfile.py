"""``zeroshot/<step>/items/<benchmark>.tsv``: one model's outcome on every item of a scored set.

Written by slmjax-eval beside ``per_file/`` for every set with gold; read by the scaling analysis,
whose downstream bootstrap redraws the items that all runs share (a run's accuracy is an estimate
from a finite item set, and every run is scored on the same items). Tab-separated, header
``ITEM_COLUMNS``, one line per item in the order rules.items_of gathers them:

- ``item``: the item's key as a JSON array (sWUGGY ``[id]``, sBLIMP ``[type, subtype, id]``,
  StoryCloze ``[index]``), the same for every model scored on the set;
- ``type``: the sBLIMP type (the macro mean's stratum), else empty; ``frequency``: the sWUGGY word
  frequency, empty when unknown; ``n_pairs``: the item's pairs (voices);
- one column per scoring convention (``mean``, ``sum``, ``mean_eos``): the item's outcome, the mean
  over its pairs of 1 / 0.5 (tie) / 0, from which scores.json's accuracies are computed.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from slmjax.analysis.zeroshot import rules
from slmjax.analysis.zeroshot.scoring import CONVENTIONS

ITEM_COLUMNS = ("item", "type", "frequency", "n_pairs") + CONVENTIONS


def items_tsv(pairs, scores: dict) -> str:
    """The file's text for ``pairs`` scored with ``scores`` (convention -> stem -> score)."""
    per_conv = {conv: rules.items_of(pairs, scores[conv]) for conv in CONVENTIONS}
    first = per_conv[CONVENTIONS[0]]
    lines = ["\t".join(ITEM_COLUMNS) + "\n"]
    for i, p in enumerate(first.first):
        freq = "" if p.frequency is None else str(int(p.frequency))
        outcomes = [repr(float(per_conv[c].means[i])) for c in CONVENTIONS]
        lines.append("\t".join([json.dumps(list(p.item)), p.group, freq, str(int(first.n_pairs[i])),
                                *outcomes]) + "\n")
    return "".join(lines)


@dataclasses.dataclass
class ItemFile:
    """A parsed items file: per item its key (the JSON text), type, frequency (NaN unknown) and
    outcome under each convention."""
    keys: list
    types: np.ndarray
    frequency: np.ndarray
    outcomes: dict

    def metric(self, metric: str):
        """(selected item keys, their types, ``stat``) of a headline metric, or None when the
        metric is not one computed from items here. ``stat`` is ``mean`` (over the items) or
        ``macro`` (mean of the per-type means), as rules computes them."""
        if metric in ("all", "item", "accuracy"):
            sel = np.ones(len(self.keys), bool)
        elif metric == "in_vocab":
            sel = self.frequency > 0
        elif metric == "macro":
            return self.keys, self.types, "macro"
        else:
            return None
        return [k for k, s in zip(self.keys, sel) if s], self.types[sel], "mean"

    def values(self, convention: str, keys) -> np.ndarray:
        """Outcomes under ``convention`` of the items ``keys``, in that order."""
        index = {k: i for i, k in enumerate(self.keys)}
        return self.outcomes[convention][[index[k] for k in keys]]


def parse_items_tsv(text: str) -> ItemFile:
    """An ItemFile from a file's text; ValueError naming the first line that is not as written."""
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != ITEM_COLUMNS:
        raise ValueError(f"header is not {', '.join(ITEM_COLUMNS)}")
    keys, types, freq, outs, seen = [], [], [], [], set()
    for n, line in enumerate(lines[1:], 2):
        cells = line.split("\t")
        if len(cells) != len(ITEM_COLUMNS):
            raise ValueError(f"line {n} has {len(cells)} fields, not {len(ITEM_COLUMNS)}")
        key, kind, f, _pairs, *vals = cells
        if key in seen:
            raise ValueError(f"line {n} repeats item {key}")
        seen.add(key)
        try:
            v = [float(x) for x in vals]
            fv = float(f) if f else np.nan
        except ValueError:
            raise ValueError(f"line {n} holds a value that is not a number") from None
        if not all(0.0 <= x <= 1.0 for x in v):
            raise ValueError(f"line {n} holds an outcome outside [0, 1]")
        keys.append(key)
        types.append(kind)
        freq.append(fv)
        outs.append(v)
    o = np.asarray(outs, np.float64).reshape(len(keys), len(CONVENTIONS))
    return ItemFile(keys, np.asarray(types, dtype=object), np.asarray(freq, np.float64),
                    {c: o[:, j] for j, c in enumerate(CONVENTIONS)})
