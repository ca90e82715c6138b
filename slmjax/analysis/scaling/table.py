"""The run table: one row per finished training run, read from a CSV or a sweep root, validated.

Columns (NumPy arrays, one entry per run):
- ``run_id``; ``n_params`` (N, tied embedding counted once); ``n_params_nonemb`` (NaN if unknown);
- ``tokens`` (D, tokens seen, repeats counted); ``unique_tokens`` (U_D, = D when unknown); ``epochs`` = D/U_D;
- ``flops``: a dict convention -> C per run: ``6N`` (N total), ``6N_nonemb`` and ``6N_attn`` (PaLM-style
  6N + 12 L H Q T with causal attention halved) when known;
- ``test_loss``; ``budget`` (an IsoFLOP group label in FLOPs, NaN if none);
- ``acc``: task -> (accuracy in [0, 1], number of items); a column whose values all lie in (1, 100] is
  read as percent;
- ``items``: task -> items.ItemScores, each run's outcome on the benchmark items all runs share
  (from a sweep root whose runs were scored with item outcomes; a CSV has none).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os

import numpy as np

from slmjax import fileio
from slmjax.analysis.scaling.errors import FitInputError

REQUIRED = ("n_params", "tokens", "test_loss")
ALIASES = {"params": "n_params", "n": "n_params", "loss": "test_loss", "d": "tokens",
           "run": "run_id", "name": "run_id", "flops_6n_attn": "flops", "c_6n_attn": "flops", "c": "flops"}
OPTIONAL_NUMERIC = ("n_params_nonemb", "unique_tokens", "flops", "budget", "tokens_seen",
                    "n_layers", "dim", "seq_len")


@dataclasses.dataclass
class RunTable:
    run_id: np.ndarray
    n_params: np.ndarray
    n_params_nonemb: np.ndarray
    tokens: np.ndarray
    unique_tokens: np.ndarray
    test_loss: np.ndarray
    budget: np.ndarray
    flops: dict
    acc: dict
    source: str = ""
    excluded: list = dataclasses.field(default_factory=list)   # (run_id, reason)
    notes: list = dataclasses.field(default_factory=list)
    items: dict = dataclasses.field(default_factory=dict)   # task -> items.ItemScores

    def __len__(self):
        return len(self.run_id)

    @property
    def epochs(self):
        return self.tokens / self.unique_tokens

    @property
    def multi_epoch(self):
        return self.epochs > 1.0 + 1e-6

    def n(self, which: str = "total") -> np.ndarray:
        """N under a parameter-count convention: ``total`` or ``nonemb``."""
        if which == "total":
            return self.n_params
        if which == "nonemb":
            if not np.all(np.isfinite(self.n_params_nonemb)):
                raise FitInputError("--n_param=nonemb needs an n_params_nonemb value for every run")
            return self.n_params_nonemb
        raise FitInputError(f"unknown parameter-count convention {which!r} (use total or nonemb)")

    def subset(self, idx) -> "RunTable":
        idx = np.asarray(idx)
        take = lambda a: a[idx]
        return dataclasses.replace(
            self, run_id=take(self.run_id), n_params=take(self.n_params),
            n_params_nonemb=take(self.n_params_nonemb), tokens=take(self.tokens),
            unique_tokens=take(self.unique_tokens), test_loss=take(self.test_loss),
            budget=take(self.budget), flops={k: take(v) for k, v in self.flops.items()},
            acc={k: (take(a), take(m)) for k, (a, m) in self.acc.items()},
            items={k: v.take(idx) for k, v in self.items.items()}, excluded=list(self.excluded), notes=list(self.notes))

    def rows(self) -> list[dict]:
        """The table as row dicts with every derived column (written as runs.csv by the CLI)."""
        out = []
        for i in range(len(self)):
            r = dict(run_id=self.run_id[i], n_params=self.n_params[i], n_params_nonemb=self.n_params_nonemb[i],
                     tokens=self.tokens[i], unique_tokens=self.unique_tokens[i], epochs=self.epochs[i],
                     test_loss=self.test_loss[i], budget=self.budget[i])
            r.update({f"C_{k}": v[i] for k, v in self.flops.items()})
            for t, (a, m) in self.acc.items():
                r[f"acc_{t}"], r[f"n_{t}"] = a[i], m[i]
            out.append({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out_row(r)})
        return out

    def distinct(self, values, rel=0.01) -> int:
        """Number of distinct values up to a relative tolerance."""
        v = np.sort(np.log(np.asarray(values)))
        return int(1 + np.sum(np.diff(v) > math.log1p(rel))) if len(v) else 0


def out_row(r):
    return [(k, float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in r.items()]


def _num(text, what, where):
    try:
        return float(text)
    except (TypeError, ValueError):
        raise FitInputError(f"{where}: {what} {text!r} is not a number") from None


def _optional(r, key, where):
    """A row's optional number: NaN when blank."""
    raw = r.get(key, "")
    return math.nan if raw in ("", None) else _num(raw, key, where)


def _fractions(t, a, ids, source, notes):
    """Accuracies of column ``acc_<t>`` as fractions: all in [0, 1], or all in (1, 100] (percent)."""
    fin = np.isfinite(a)
    frac, pct = np.nonzero(fin & (a <= 1))[0], np.nonzero(fin & (a > 1))[0]
    if len(frac) and len(pct):
        raise FitInputError(f"{source}: acc_{t} mixes fractions and percents (run {ids[frac[0]]} has "
                            f"{a[frac[0]]:g}, run {ids[pct[0]]} has {a[pct[0]]:g}); use one unit")
    if len(pct):
        notes.append(f"acc_{t} read as percent and divided by 100")
        return a / 100.0
    return a


def build_table(rows: list[dict], source: str, min_sizes: int = 3, min_budgets: int = 3,
                excluded=None, notes=None, min_runs: int = 6) -> RunTable:
    """Validate row dicts (numeric fields already parsed or strings) into a RunTable."""
    if not rows:
        raise FitInputError(f"{source}: no runs found")
    excluded = list(excluded or [])
    notes = list(notes or [])
    ids, seen = [], {}
    cols = {k: [] for k in REQUIRED + OPTIONAL_NUMERIC}
    tasks = sorted({k[4:] for r in rows for k in r if k.startswith("acc_")})
    acc = {t: ([], []) for t in tasks}
    for i, r in enumerate(rows):
        rid = str(r.get("run_id") or f"row{i + 1}")
        where = f"{source} run {rid}"
        if rid in seen:
            raise FitInputError(f"{source}: run_id {rid!r} appears twice (rows {seen[rid] + 1} and {i + 1})")
        seen[rid] = i
        ids.append(rid)
        for k in REQUIRED + OPTIONAL_NUMERIC:
            raw = r.get(k, "")
            if raw in ("", None):
                if k in REQUIRED:
                    raise FitInputError(f"{where}: {k} is missing")
                cols[k].append(math.nan)
                continue
            v = _num(raw, k, where)
            if not math.isfinite(v) or v <= 0:
                kind = "NaN" if math.isnan(v) else f"{v:g}"
                raise FitInputError(f"{where}: {k} is {kind} (must be a positive finite number)")
            cols[k].append(v)
        for t in tasks:
            a, m = _optional(r, f"acc_{t}", where), _optional(r, f"n_{t}", where)
            if not (math.isnan(a) or 0 <= a <= 100):
                raise FitInputError(f"{where}: acc_{t} is {a:g} (must be in [0, 1], or in (1, 100] as percent)")
            if not (math.isnan(m) or 0 < m < math.inf):
                raise FitInputError(f"{where}: n_{t} is {m:g} (must be a positive number of items)")
            acc[t][0].append(a)
            acc[t][1].append(m)
    col = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    N, D, L = col["n_params"], col["tokens"], col["test_loss"]
    U = np.where(np.isfinite(col["unique_tokens"]), col["unique_tokens"], D)
    bad = np.nonzero(U > D * (1 + 1e-6))[0]
    if len(bad):
        i = bad[0]
        raise FitInputError(f"{source} run {ids[i]}: unique_tokens {U[i]:.4g} exceeds tokens {D[i]:.4g}")
    ts = col["tokens_seen"]
    short = np.isfinite(ts) & (np.abs(ts - D) > 0.01 * D)
    keep = ~short
    for i in np.nonzero(short)[0]:
        excluded.append((ids[i], f"schedule ended at {ts[i]:.4g} tokens, not its budget D = {D[i]:.4g}"))
    nonemb = col["n_params_nonemb"]
    bad = np.nonzero(np.isfinite(nonemb) & (nonemb > N))[0]
    if len(bad):
        raise FitInputError(f"{source} run {ids[bad[0]]}: n_params_nonemb exceeds n_params")
    flops = {"6N": 6.0 * N * D}
    if np.all(np.isfinite(nonemb)):
        flops["6N_nonemb"] = 6.0 * nonemb * D
    given = np.all(np.isfinite(col["flops"]))
    if given:
        _check_flops_units(col["flops"] / flops["6N"], ids, source)
    if given and np.allclose(col["flops"], flops["6N"], rtol=1e-6, atol=0):
        notes.append("the flops column equals 6ND (no attention term): the 6N_attn convention is "
                     "taken from n_layers, dim and seq_len when given")
        given = False
    elif given and "6N_nonemb" in flops and np.allclose(col["flops"], flops["6N_nonemb"], rtol=1e-6, atol=0):
        notes.append("the flops column equals 6 N_nonemb D (non-embedding compute, no attention term): "
                     "it is the 6N_nonemb convention; 6N_attn is taken from n_layers, dim and seq_len "
                     "when given")
        given = False
    elif given:
        _note_flops_below_6nd(col["flops"] / flops["6N"], ids, notes)
    if given:
        flops["6N_attn"] = col["flops"]
    elif all(np.all(np.isfinite(col[k])) for k in ("n_layers", "dim", "seq_len")):
        # PaLM/MaxText: 6N + 12 L H Q T per token with H Q = dim, causal attention halved.
        flops["6N_attn"] = (6.0 * N + 6.0 * col["n_layers"] * col["dim"] * col["seq_len"]) * D
    accd = {t: (_fractions(t, np.asarray(a), ids, source, notes), np.asarray(m)) for t, (a, m) in acc.items()}
    table = RunTable(run_id=np.asarray(ids, dtype=object), n_params=N, n_params_nonemb=nonemb,
                     tokens=D, unique_tokens=U, test_loss=L, budget=col["budget"], flops=flops,
                     acc=accd, source=source, excluded=excluded, notes=notes)
    table = table.subset(np.nonzero(keep)[0])
    key = np.round(np.log(np.stack([table.n_params, table.tokens, table.unique_tokens], 1)), 4)
    n_dup = len(key) - len(np.unique(key, axis=0))
    if n_dup:
        table.notes.append(f"{n_dup} run(s) repeat another run's (N, D, unique tokens): kept as replicates")
    labelled = np.isfinite(table.budget) | table.multi_epoch
    if 0 < np.isfinite(table.budget).sum() and not labelled.all():
        miss = table.run_id[~labelled]
        use = ("IsoFLOP profiles (Approach 2) use only the labelled runs" if np.isfinite(table.budget).sum() >= 3
               else "the labels are ignored (fewer than 3) and IsoFLOP profiles are interpolated along each size")
        table.notes.append(f"budget missing for {len(miss)} single-epoch run(s) ({', '.join(miss[:5])}"
                           f"{', ...' if len(miss) > 5 else ''}): {use}")
    check_coverage(table, min_sizes, min_budgets, min_runs)
    return table


def _note_flops_below_6nd(ratio, ids, notes):
    """6N plus attention is at least 6ND: a flops column below it is counted another way (forward
    passes only, non-embedding parameters, ...), which the 6N_attn name does not say."""
    low = np.nonzero(ratio < 1 - 1e-6)[0]
    if len(low):
        i = low[np.argmin(ratio[low])]
        notes.append(f"the flops column is below 6ND for {len(low)} of {len(ratio)} runs (down to "
                     f"{ratio[i]:.3g} times, run {ids[i]}): not 6N plus attention, as the 6N_attn "
                     "convention it is used for counts; it is used as given")


def _check_flops_units(ratio, ids, source):
    """Total training FLOPs lie near 6ND (attention adds, a non-embedding 6N takes away, within a few
    times): a ratio orders of magnitude off is FLOPs per token, or another unit."""
    bad = np.nonzero((ratio < 0.01) | (ratio > 1e3))[0]
    if len(bad):
        i = bad[0]
        raise FitInputError(f"{source} run {ids[i]}: flops is {ratio[i]:.3g} times 6ND; the column is total "
                            "training FLOPs (FLOPs per token times D, not per token or in other units)")


def check_coverage(table: RunTable, min_sizes: int = 3, min_budgets: int = 3, min_runs: int = 6):
    """At least ``min_runs`` runs (6: more than L(N, D)'s five parameters, which any five runs fit
    exactly), ``min_sizes`` model sizes and ``min_budgets`` token budgets, or one clear error.

    Budgets are counted as distinct tokens per parameter (D/N within 5%): with fewer than three, D is
    tied to N and the surface cannot separate the two terms; so it is when every run sits at one
    compute budget, one D, or any one line in (log N, log D).
    """
    if len(table) < min_runs:
        raise FitInputError(f"{table.source}: only {len(table)} run{'s' if len(table) != 1 else ''} to fit "
                            f"L(N, D) on (single-epoch ones; multi-epoch runs fit its second stage): a law of 5 "
                            f"parameters passes through any 5 runs exactly, leaving no error to measure; need at "
                            f"least {min_runs} (10 or more for useful intervals)")
    ns, nd = table.distinct(table.n_params), table.distinct(table.tokens / table.n_params, rel=0.05)
    if ns < min_sizes:
        raise FitInputError(f"{table.source}: only {ns} model size{'s' if ns != 1 else ''} "
                            f"(need at least {min_sizes} sizes and {min_budgets} token budgets to fit L(N, D))")
    if nd < min_budgets:
        raise FitInputError(f"{table.source}: only {nd} token budget{'s' if nd != 1 else ''} (distinct D/N) "
                            f"(need at least {min_budgets} budgets and {min_sizes} sizes to fit L(N, D))")
    # (log N, log D) on one line (within 5%): D is a function of N and the two terms cannot be separated.
    X = np.log(np.stack([table.n_params, table.tokens], 1))
    X -= X.mean(0)
    line = np.linalg.svd(X, full_matrices=False)[2]
    if min_budgets > 1 and np.abs(X @ line[1]).max() < math.log1p(0.05):
        s = line[0][1] / line[0][0]
        what = ("one compute budget (C = 6ND within 5%)" if abs(s + 1) < 0.05 else
                "one token count D" if abs(s) < 0.05 else f"one line D ~ N^{s:.2f}")
        raise FitInputError(f"{table.source}: all runs at {what}, so L(N, D) cannot separate the N and D terms "
                            "(need runs at 2 or more compute budgets)")


def _column_names(fieldnames, path):
    """Header -> field name (aliases resolved); one clear line when two columns give one field."""
    names, seen = {}, {}
    for h in fieldnames:
        if h is None:
            continue
        name = ALIASES.get(h.strip().lower(), h.strip().lower())
        if name in seen:
            raise FitInputError(f"{path}: columns {seen[name].strip()!r} and {h.strip()!r} both give {name}; "
                                "keep one")
        names[h], seen[name] = name, h
    return names


def csv_rows(path: str, what: str = "") -> tuple[list[str] | None, list[dict]]:
    """(column names, rows) of a UTF-8 CSV; one FitInputError line when it cannot be read.
    ``what`` names the table in messages ("reference table")."""
    of = f"{what} " if what else ""
    try:
        with open(path, "rb") as f:   # utf-8-sig: a byte-order mark is not part of the first column's name
            reader = csv.DictReader(io.StringIO(f.read().decode("utf-8-sig"), newline=""))
            return reader.fieldnames, list(reader)
    except OSError as e:
        raise FitInputError(f"{path}: {of}not readable ({e.strerror})") from None
    except UnicodeDecodeError as e:
        line, byte = fileio.undecodable_at(e)
        raise FitInputError(f"{path}: line {line} {'of the ' + what + ' ' if what else ''}is not UTF-8 "
                            f"text (byte {byte:#04x}); save it as UTF-8") from None
    except csv.Error as e:
        raise FitInputError(f"{path}: {of}not a readable CSV ({e})") from None


def read_csv(path: str, experiment: str | None = None, **kw) -> RunTable:
    """Read a run table from CSV (``run_id,n_params,tokens,test_loss`` at least; see module doc).

    Accuracy columns are ``acc_<task>`` with item counts ``n_<task>``. ``experiment`` keeps the rows
    whose ``experiment`` column equals it (tables that hold several studies must name one).
    """
    if not os.path.isfile(path):
        raise FitInputError(f"{path}: no such file")
    fieldnames, rows = csv_rows(path)
    if not fieldnames:
        raise FitInputError(f"{path}: empty CSV (no header)")
    names = _column_names(fieldnames, path)
    missing = [c for c in REQUIRED if c not in names.values()]
    if missing:
        raise FitInputError(f"{path}: missing column {missing[0]!r} (need run_id,n_params,tokens,test_loss)")
    # Hand-edited tables pad cells with spaces: ' 2.5 ' is 2.5 and '  ' is blank.
    rows = [{names[k]: v.strip() if isinstance(v, str) else v for k, v in r.items() if k is not None}
            for r in rows]
    if "experiment" in names.values():
        exps = sorted({r.get("experiment") or "" for r in rows})
        if experiment is not None:
            if experiment not in exps:
                raise FitInputError(f"{path}: no experiment {experiment!r} (has {', '.join(exps)})")
            rows = [r for r in rows if r.get("experiment") == experiment]
        elif len(exps) > 1:
            raise FitInputError(f"{path}: holds {len(exps)} experiments ({', '.join(exps)}); "
                                "pick one with --experiment")
    elif experiment is not None:
        raise FitInputError(f"{path}: --experiment given but the CSV has no experiment column")
    src = os.path.basename(path) + (f"[{experiment}]" if experiment else "")
    return build_table(rows, src, **kw)
