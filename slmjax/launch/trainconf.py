"""Read a run's training config the way `slmjax-train` will: `get_config(arg)` plus overrides.

The sweep needs each size's parameter count N (for D = ratio * N) before anything runs, so it
loads configs/train.py itself, applies the run's `--config.*` overrides and asks the model package
for N. The trainer builds the very same config from the command line the sweep writes.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import ml_collections

from slmjax.errortext import describe

_CACHE: dict[str, Any] = {}


def _error(msg: str) -> Exception:
    from slmjax.launch.grid import SweepError

    return SweepError(msg)


def resolve_path(path: str, repo_root: str | None = None) -> str:
    """An existing file for `path`: as given, else relative to the repository root."""
    if os.path.isabs(path) or os.path.exists(path) or repo_root is None:
        return path
    return os.path.join(repo_root, path)


def _module(path: str):
    if path not in _CACHE:
        spec = importlib.util.spec_from_file_location(
            f"_slmjax_train_config_{len(_CACHE)}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except SyntaxError as e:
            raise _error(f"train_config={path!r} cannot be loaded: SyntaxError: {e.msg} "
                         f"(line {e.lineno})") from None
        except Exception as e:  # noqa: BLE001 - whatever the file raises as it is imported
            raise _error(f"train_config={path!r} cannot be loaded: {describe(e)}") from None
        if not hasattr(module, "get_config"):
            raise _error(f"train_config={path!r} defines no get_config()")
        _CACHE[path] = module
    return _CACHE[path]


def set_field(cfg: ml_collections.ConfigDict, dotted: str, value: Any, what: str) -> None:
    """cfg.a.b = value for dotted 'a.b'; a missing field is one clear error naming it."""
    *parents, leaf = dotted.split(".")
    node = cfg
    for i, name in enumerate(parents):
        if name not in node or not isinstance(node[name], ml_collections.ConfigDict):
            raise _error(f"{what}: the training config has no section '{'.'.join(parents[:i + 1])}' "
                         f"(override {dotted}={value!r})")
        node = node[name]
    if leaf not in node:
        raise _error(f"{what}: the training config has no field '{dotted}' (override {dotted}={value!r})")
    try:
        node[leaf] = value
    except (TypeError, ValueError) as e:
        raise _error(f"{what}: cannot set {dotted}={value!r}: {e}") from None


def _has(cfg, key: str) -> bool:
    try:
        return key in cfg
    except TypeError:  # get_config returned something that holds no fields
        return False


def load(train_config: str, arg: str, overrides: list[tuple[str, Any]],
         repo_root: str | None = None) -> ml_collections.ConfigDict:
    """get_config(arg) from the training config file, with `overrides` applied in order."""
    path = resolve_path(train_config, repo_root)
    if not os.path.isfile(path):
        places = [os.getcwd()] + ([repo_root] if repo_root else [])
        where = "" if os.path.isabs(train_config) else f" (looked in {' and '.join(places)})"
        raise _error(f"train_config={train_config!r}: no such file{where}")
    module = _module(path)
    try:
        cfg = module.get_config(arg) if arg else module.get_config()
    except (KeyError, ValueError) as e:
        raise _error(f"{train_config}:{arg}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a broken get_config: one line naming the file
        raise _error(f"{train_config}:{arg}: get_config failed: {describe(e)}") from None
    missing = [k for k in ("model", "train", "data", "mesh") if not _has(cfg, k)]
    if missing:  # say, a sweep config given as train_config
        names = " or ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
        raise _error(f"{train_config}:{arg}: not a training config (no {names} section; "
                     "configs/train.py is one)")
    for dotted, value in overrides:
        set_field(cfg, dotted, value, f"{train_config}:{arg}")
    return cfg


def count_params(cfg: ml_collections.ConfigDict) -> int:
    """N: total parameters (tied embedding counted once) of the model `cfg.model` describes."""
    from slmjax.model import count_params as model_count
    from slmjax.train.validate import model_config

    total, _ = model_count(model_config(cfg))
    return int(total)


def check(cfg: ml_collections.ConfigDict, what: str) -> int:
    """Validate a run's training config as slmjax-train will; returns its warm-up steps."""
    from slmjax.train.optim import warmup_steps
    from slmjax.train.validate import problems

    found = problems(cfg)
    if found:
        raise _error(f"{what}: {found[0]}" + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))
    return warmup_steps(cfg)


def device_problems(cfg: ml_collections.ConfigDict, n_devices: int) -> list[str]:
    """What slmjax-train will refuse about `cfg` on `n_devices` devices, and not on any count: the
    mesh, and the batch shards each update's batch must divide into (PAPER.md's batches 252 and
    494 divide into no multiple of 8 shards). cuDNN attention is checked where the run's GPUs are."""
    import copy

    from slmjax.train.validate import problems

    c = copy.deepcopy(cfg)
    c.model.attention = "xla"
    anywhere = set(problems(c))
    return [p for p in problems(c, n_devices) if p not in anywhere]


def data_tokens(cfg: ml_collections.ConfigDict) -> int | None:
    """Training tokens of the data `cfg.data` names, counted by slmjax.data; None if unreadable."""
    try:
        from slmjax.data import open_datasets

        return int(sum(ds.splits["train"].n_tokens for ds in open_datasets(cfg))) or None
    except Exception:  # noqa: BLE001 - remote or absent data: U stays unknown ("-" in the table)
        return None
