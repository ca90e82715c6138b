"""Expand a sweep config (configs/sweeps/*.py) into the runs of a scaling study.

A sweep config names model sizes (each with its batch size and optionally its own D/N
ratios), token-to-parameter ratios D/N and multi-epoch runs. Each run gets N from the model its
training config builds, a token budget D, steps = ceil(D / (batch_size * seq_len)) so that the LR
schedule ends at its budget, compute C = 6ND, a key such as `s85m_d2.7e9`, and a workdir
`<root>/<key>`. The run's training config is `<train_config>:<size arg>` plus `--config.*`
overrides; see `commands.train_args`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any, Iterable

import ml_collections

from slmjax.launch import trainconf


_KEY_CHARS = re.compile(r"[A-Za-z0-9_.+-]*")   # a key names a workdir, a SLURM job and its log


class SweepError(ValueError):
    """A sweep config or launcher setting that cannot work (one line, names the field)."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a sweep."""

    key: str
    size: str                  # the size's name in the sweep config
    n_params: int              # N: total parameters, tied embedding counted once
    tokens: int                # D: the token budget the schedule ends at
    batch_size: int            # global sequences per update
    seq_len: int
    steps: int                 # ceil(D / (batch_size * seq_len))
    warmup: int                # warm-up updates of its schedule (the training config's rule)
    unique_tokens: int | None  # U: distinct tokens the run may see (None: unknown)
    restricted: bool           # True: the run is limited to its first U unique tokens
    workdir: str
    overrides: tuple[tuple[str, Any], ...]  # ("train.steps", 123), ... in command-line order
    train_config: str          # "<path>:<arg>" as given to slmjax-train --config
    # The training config those overrides give, as expansion loaded it (None: a Run made by hand).
    config: ml_collections.ConfigDict | None = dataclasses.field(default=None, compare=False,
                                                                 repr=False)

    @property
    def flops(self) -> float:
        """C = 6 N D (the paper's convention; N total parameters)."""
        return 6.0 * self.n_params * self.tokens

    @property
    def ratio(self) -> float:
        return self.tokens / self.n_params

    @property
    def epochs(self) -> float | None:
        return self.tokens / self.unique_tokens if self.unique_tokens else None


def format_tokens(d: float) -> str:
    """2.73e9 -> '2.7e9' (two significant figures, no '+' or leading zeros in the exponent)."""
    mantissa, exponent = f"{d:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def flatten(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts / ConfigDicts -> [("a.b", value), ...] in key order."""
    if isinstance(tree, ml_collections.ConfigDict):
        tree = tree.to_dict()
    if not isinstance(tree, dict):
        return [(prefix, tree)]
    out: list[tuple[str, Any]] = []
    for k, v in tree.items():
        out.extend(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _positive_int(value: Any, field: str) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value <= 0 or value != int(value)):
        raise SweepError(f"{field} must be a positive integer, got {value!r}")
    return int(value)


def dataset_vocab(data_path: str) -> int | None:
    """vocab_size of the unit dataset(s) at `data_path` (comma-joined), from their manifest.json.

    None when a manifest cannot be read (a remote path, or no dataset yet). Datasets with
    different vocabularies cannot be mixed: one clear error."""
    vocabs = set()
    for path in [p.strip() for p in data_path.split(",") if p.strip()]:
        try:
            # ~ expanded as slmjax.data expands it when the trainer opens the same path.
            with open(os.path.join(os.path.expanduser(path), "manifest.json")) as f:
                vocabs.add(int(json.load(f)["vocab_size"]))
        except (OSError, KeyError, ValueError, TypeError):
            return None
    if len(vocabs) > 1:
        raise SweepError(f"data_path mixes datasets with vocab sizes {sorted(vocabs)}")
    return vocabs.pop() if vocabs else None


def _check_key_part(text: str, field: str) -> None:
    if not _KEY_CHARS.fullmatch(text):
        raise SweepError(f"{field}: {text!r} is part of run keys (workdir and job names): use only "
                         "letters, digits and _ . + -")


def _size_batch(spec: ml_collections.ConfigDict, name: str, ratio: float | None) -> int:
    batch = _positive_int(spec.batch_size, f"sizes.{name}.batch_size")
    pairs = spec.get("batch_size_by_ratio", ()) or ()
    if not isinstance(pairs, (tuple, list)) or not all(
            isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], (int, float))
            and not isinstance(p[0], bool) for p in pairs):
        raise SweepError(f"sizes.{name}.batch_size_by_ratio must be (ratio, batch_size) pairs, "
                         f"e.g. ((64, 494), (100, 608)), got {pairs!r}")
    for r, b in pairs:
        if ratio is not None and math.isclose(float(r), ratio):
            batch = _positive_int(b, f"sizes.{name}.batch_size_by_ratio")
    return batch


def expand(cfg: ml_collections.ConfigDict, root: str, repo_root: str | None = None) -> list[Run]:
    """All runs of the sweep `cfg` under `root`, sorted by N then D. Validates before any compute."""
    for field in ("train_config", "sizes", "ratios", "seq_len"):
        if field not in cfg:
            raise SweepError(f"sweep config has no field '{field}'")
    if not root:
        raise SweepError("--root is empty: give the directory that holds the runs")
    seq_len = _positive_int(cfg.seq_len, "seq_len")
    data_path = cfg.get("data_path", "") or ""
    vocab = dataset_vocab(data_path) if data_path else None
    common = flatten(cfg.get("overrides", {}) or {})
    if data_path:
        # The model's vocabulary is the dataset's (the trainer checks that they agree).
        if vocab is not None:
            common = [("model.vocab_size", vocab)] + [o for o in common if o[0] != "model.vocab_size"]
        common = [("data.kind", "units"), ("data.path", data_path)] + common
    prefix = cfg.get("key_prefix", "") or ""
    _check_key_part(prefix, "key_prefix")

    sizes = {}
    for name, spec in cfg.sizes.items():
        _check_key_part(name, f"sizes.{name}")
        if "batch_size" not in spec:
            raise SweepError(f"sizes.{name} has no batch_size")
        arg = spec.get("train_arg", "") or name
        size_over = flatten(spec.get("overrides", {}) or {})
        tcfg = trainconf.load(cfg.train_config, arg, size_over + common, repo_root)
        sizes[name] = (arg, size_over, trainconf.count_params(tcfg))
    # U: the config's figure, else what the data package counts in the training split(s).
    unique = cfg.get("unique_tokens", 0) or (trainconf.data_tokens(tcfg) if sizes else None)
    if unique is not None:
        unique = _positive_int(unique, "unique_tokens")

    plan: list[tuple[str, float | None, int, int | None, bool]] = []
    for name in sizes:
        # A size may name its own ratios (sizes.NAME.ratios), e.g. to spare the largest model the
        # longest budgets or to run small ones far past D/N = 20.
        own = cfg.sizes[name].get("ratios", None)
        where = "ratios" if own is None else f"sizes.{name}.ratios"
        ratios = cfg.ratios if own is None else own
        if not isinstance(ratios, (tuple, list)):
            raise SweepError(f"{where} must be a tuple of positive numbers, got {ratios!r}")
        for r in ratios:
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0:
                raise SweepError(f"{where} must be positive numbers, got {r!r}")
            plan.append((name, float(r), round(r * sizes[name][2]), unique, False))
        _size_batch(cfg.sizes[name], name, None)   # the pairs' shape, before their ratios
        for r, _ in cfg.sizes[name].get("batch_size_by_ratio", ()) or ():
            if not any(math.isclose(float(r), float(x)) for x in ratios):  # a typo, or a stale entry
                raise SweepError(f"sizes.{name}.batch_size_by_ratio names D/N = {r}, a ratio "
                                 f"{name} does not run ({where}: {tuple(ratios)})")
    me = cfg.get("multi_epoch", None)
    if me is not None and me.get("sizes"):
        me_unique = me.get("unique_tokens", 0) or unique
        if not me_unique:
            raise SweepError("multi_epoch needs unique_tokens (or data the sweep can open and count)")
        me_unique = _positive_int(me_unique, "multi_epoch.unique_tokens")
        restrict = bool(me.get("unique_tokens", 0))
        if restrict and unique and me_unique > unique:
            raise SweepError(f"multi_epoch.unique_tokens={me_unique} exceeds the {unique} training "
                             "tokens of the data (unique_tokens)")
        for name in me.sizes:
            if name not in sizes:
                raise SweepError(f"multi_epoch.sizes names '{name}', not one of sizes: {', '.join(sizes)}")
            for e in me.epochs:
                plan.append((name, None, _positive_int(e, "multi_epoch.epochs") * me_unique, me_unique, restrict))

    runs: list[Run] = []
    for name, ratio, d, u, restricted in plan:
        arg, size_over, n = sizes[name]
        batch = _size_batch(cfg.sizes[name], name, ratio)
        steps = -(-d // (batch * seq_len))   # ceil, in integers
        key = f"{prefix}{name}_d{format_tokens(d)}"
        if restricted:
            key += f"_u{format_tokens(u)}"
        over = list(size_over) + list(common) + [
            ("data.seq_len", seq_len), ("train.batch_size", batch), ("train.tokens", d),
            ("train.steps", steps)]
        if restricted:
            over.append(("data.max_unique_tokens", u))
        run_cfg = trainconf.load(cfg.train_config, arg, over, repo_root)
        warmup = trainconf.check(run_cfg, key)
        runs.append(Run(key=key, size=name, n_params=n, tokens=d, batch_size=batch, seq_len=seq_len,
                        steps=steps, warmup=warmup, unique_tokens=u, restricted=restricted,
                        workdir=join(root, key), overrides=tuple(over),
                        train_config=f"{cfg.train_config}:{arg}", config=run_cfg))
    runs.sort(key=lambda r: (r.n_params, r.tokens, r.key))
    seen: dict[str, Run] = {}
    for r in runs:
        if r.key in seen:
            raise SweepError(f"two runs share the key {r.key}: give the sizes distinct names or "
                             "ratios/epochs that differ at two significant figures")
        seen[r.key] = r
    return runs


def select(runs: Iterable[Run], pattern: str | None) -> list[Run]:
    """Runs whose key matches the regular expression `pattern` (all when None or empty)."""
    runs = list(runs)
    if not pattern:
        return runs
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise SweepError(f"--only={pattern!r} is not a regular expression: {e}") from None
    chosen = [r for r in runs if rx.search(r.key)]
    if not chosen:
        raise SweepError(f"--only={pattern!r} matches none of the {len(runs)} runs")
    return chosen


def check_devices(runs: Iterable[Run], n_devices: int, what: str) -> None:
    """Refuse, in one line, runs slmjax-train will refuse on `n_devices` devices (`what` they are):
    a mesh that cannot fill them, or a batch that does not divide into its shards. The runs are
    expand()'s, which carry their training config."""
    unfit = [f"{r.key}: {p}" for r in runs for p in trainconf.device_problems(r.config, n_devices)]
    if unfit:
        more = f" (and {len(unfit) - 1} more)" if len(unfit) > 1 else ""
        raise SweepError(f"{unfit[0]}, on {what}{more}: give that size a mesh that fits (e.g. "
                         "mesh.tensor in its sizes.NAME.overrides) or leave its runs out with --only")


def join(root: str, name: str) -> str:
    """root/name (a root given with or without its trailing slash)."""
    return root.rstrip("/") + "/" + name


def table(runs: list[Run]) -> str:
    """The plan as an aligned text table: key, N, D, D/N, epochs, C, batch, steps, warm-up, workdir."""
    head = ("key", "N", "D", "D/N", "epochs", "C=6ND", "batch", "steps", "warmup", "workdir")
    rows = [head] + [(
        r.key, f"{r.n_params:,}", f"{r.tokens:.3e}", f"{r.ratio:.4g}",
        f"{r.epochs:.4g}" if r.epochs is not None else "-", f"{r.flops:.3e}", str(r.batch_size),
        f"{r.steps:,}", f"{r.warmup:,}", r.workdir) for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    right = {1, 2, 3, 4, 5, 6, 7, 8}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    total = sum(r.flops for r in runs)
    lines.append(f"{len(runs)} runs, total C = {total:.3e} FLOPs"
                 + (f", from {min(r.flops for r in runs):.2e} to {max(r.flops for r in runs):.2e}" if runs else ""))
    return "\n".join(lines)
