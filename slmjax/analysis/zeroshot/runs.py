"""What a run says about itself: the datasets it trained on, their tokenizer, its checkpoints.

Reads only files (``config.json``, ``run.json``, the unit datasets' ``manifest.json``) and the public
``slmjax.train.checkpoint`` functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from slmjax import fileio
from slmjax.analysis.zeroshot.errors import ZeroShotError
from slmjax.analysis.zeroshot.testloss import HeldOutSet, read_manifest, split_tokens
from slmjax.errortext import describe


@dataclasses.dataclass
class RunUnits:
    """The unit scheme of a run: tokenizer identity and ids, and its datasets."""
    identity: dict | None
    tokenizer_dir: str | None
    vocab_size: int | None
    eos_id: int | None
    pad_id: int | None
    datasets: list          # (path, manifest) of every dataset in data.path
    data: dict = dataclasses.field(default_factory=dict)   # the run's data config


def read_json(path: Path, what: str) -> dict:
    """The JSON object in ``path``; ZeroShotError naming ``what`` when it is missing or not one."""
    if not path.is_file():
        raise ZeroShotError(f"{what} not found: {path}")
    try:
        return fileio.read_json_object(path)
    except ValueError as e:   # JSONDecodeError, UnicodeDecodeError
        raise ZeroShotError(f"{what} {path} is not valid JSON ({e})") from None
    except fileio.NotAJSONObject as e:
        raise ZeroShotError(f"{what} {path} is not a JSON object (a {e.kind})") from None


def _read_manifest(path: Path) -> dict:
    """A unit dataset's manifest.json, with the fields scoring needs (else one ZeroShotError)."""
    manifest = read_json(path, "unit dataset manifest")
    for key in ("tokenizer", "vocab_size", "eos_id", "pad_id"):
        if key not in manifest:
            raise ZeroShotError(f"unit dataset manifest {path} lacks {key!r}: not a dataset "
                                "written by slmjax-units")
    return manifest


def _recorded_paths(workdir: Path, count: int) -> list:
    """The absolute path of each of the run's ``count`` datasets as its trainer resolved them
    (``data.datasets[*].path`` in ``run.json``), None for one not recorded or no longer there; all
    None when run.json is missing, unreadable or records another number of datasets."""
    try:
        rows = (fileio.read_json_object(workdir / "run.json").get("data") or {}).get("datasets")
    except (OSError, ValueError, fileio.NotAJSONObject, AttributeError):
        rows = None
    if not isinstance(rows, list) or len(rows) != count:
        return [None] * count
    out = []
    for row in rows:
        path = row.get("path") if isinstance(row, dict) else None
        path = Path(path) if isinstance(path, str) and path else None
        out.append(path if path is not None and path.is_absolute() and path.is_dir() else None)
    return out


def run_units(workdir) -> RunUnits:
    """The tokenizer a run's data were made with (from ``config.json`` -> ``data.path`` manifests)."""
    workdir = Path(workdir)
    config = read_json(workdir / "config.json", "run config")
    data = config.get("data", {})
    if data.get("kind") == "synthetic" or not data.get("path"):
        return RunUnits(None, None, None, None, None, [])
    datasets = []
    raws = [raw.strip() for raw in str(data["path"]).split(",") if raw.strip()]
    # (a trailing comma: the trainer reads no dataset there either)
    recorded = _recorded_paths(workdir, len(raws))
    for raw, abs_path in zip(raws, recorded):
        # expanded as the trainer expands it (slmjax.data.manifest.open_dataset): config.json
        # keeps data.path as given, and `--config.data.path=~/units` reaches it unexpanded
        path = Path(raw).expanduser()
        if not path.is_absolute() and abs_path is not None:
            path = abs_path   # relative to the folder the trainer ran in, which run.json resolved
        elif not path.is_absolute() and not path.exists():
            path = workdir / path
        datasets.append((path, _read_manifest(path / "manifest.json")))
    first_path, first = datasets[0]
    for path, m in datasets[1:]:
        if m["tokenizer"] != first["tokenizer"]:
            raise ZeroShotError(f"the run's datasets disagree on the tokenizer: {first_path} has "
                                f"{first['tokenizer']}, {path} has {m['tokenizer']}")
    tokdir = first.get("tokenizer_dir")
    if tokdir and not Path(tokdir).is_absolute():
        tokdir = str(first_path / tokdir)
    return RunUnits(first["tokenizer"], tokdir, int(first["vocab_size"]), int(first["eos_id"]),
                    int(first["pad_id"]), datasets, data)


def training_context(workdir) -> int:
    """Tokens per training example (``data.seq_len`` in ``config.json``): the longest context the
    run's model has seen positions for, so the context to score with; the model's max_seq_len
    if the config lacks it (known before any checkpoint is read, so that scores.json's settings
    are checked before scoring with the context they will record)."""
    import ml_collections
    from slmjax.train.validate import model_config
    cfg = read_json(Path(workdir) / "config.json", "run config")
    seq_len = cfg.get("data", {}).get("seq_len")
    if seq_len:
        return int(seq_len)
    return int(model_config(ml_collections.ConfigDict({"model": cfg.get("model", {})})).max_seq_len)


def model_dtype(workdir) -> str | None:
    """The run's ``model.dtype`` (``config.json``): the compute dtype of its scores unless --dtype."""
    return read_json(Path(workdir) / "config.json", "run config").get("model", {}).get("dtype")


def load_run_tokenizer(units: RunUnits, tokenizer_dir: str | None):
    """Load the tokenizer (``--tokenizer`` or the manifest's ``tokenizer_dir``) and check that it is
    the one the run's data were encoded with."""
    from slmjax.units import load_tokenizer
    tokdir = tokenizer_dir or units.tokenizer_dir
    if not tokdir:
        raise ZeroShotError("no tokenizer: pass --tokenizer=TOKDIR (the directory made by "
                            "`slmjax-units fit` for this run's data)")
    try:
        tok = load_tokenizer(str(tokdir))
    except Exception as e:  # noqa: BLE001 - the tokenizer's own error, on one line
        raise ZeroShotError(f"cannot load tokenizer {tokdir}: {e}".splitlines()[0]) from None
    if units.identity is not None and tok.identity != units.identity:
        raise ZeroShotError(f"tokenizer {tokdir} is {tok.identity}, but the run's data were "
                            f"encoded with {units.identity}: refusing to score with other units")
    return tok


def heldout_datasets(units: RunUnits) -> dict:
    """name -> HeldOutSet of the run's test data as its trainer took it (``data.test_split``, or
    where a dataset has none, the ``data.holdout`` fraction of its training utterances): the
    natural-speech datasets (as the paper), or, when the run saw only synthetic speech, those
    (marked synthetic in scores.json)."""
    split = str(units.data.get("test_split", "test"))
    holdout = float(units.data.get("holdout", 0.01))
    from slmjax.data.manifest import distinct_names
    named = list(zip(distinct_names([p for p, _ in units.datasets]), units.datasets))
    natural = [(n, p) for n, (p, m) in named if not m.get("synthetic", False)]
    return {n: HeldOutSet(str(p), split, holdout)
            for n, p in natural or [(n, p) for n, (p, _) in named]}


def check_test_sets(test_sets: dict, tokenizer: dict) -> None:
    """Refuse, before any scoring, a test set that cannot give a test loss of ``tokenizer``'s
    units (see testloss.read_manifest) or that has no token to predict."""
    for t in test_sets.values():
        read_manifest(t.path, t.split, t.holdout, tokenizer)
        if split_tokens(t.path, t.split, t.holdout) < 2:
            raise ZeroShotError(f"{t.path} split {t.split!r} is empty: no test loss of it; name "
                                "other --test_data, or --test_data= for none")


def named_test_sets(paths) -> dict:
    """name -> HeldOutSet of the ``test`` split of each dataset in ``paths`` (--test_data; empty
    items, as a trailing comma gives, are none)."""
    return {name: HeldOutSet(str(p)) for name, p in dataset_names(p for p in paths if p).items()}


def dataset_names(paths) -> dict:
    """name -> path, named as the trainer names them (slmjax.data.manifest.distinct_names)."""
    from slmjax.data.manifest import distinct_names
    paths = list(dict.fromkeys(Path(p) for p in paths))
    return dict(zip(distinct_names(paths), paths))


def list_checkpoint_steps(workdir) -> list:
    from slmjax.train.checkpoint import list_steps
    return sorted(int(s) for s in list_steps(str(workdir)))


def checkpoint_fingerprint(workdir, step) -> str | None:
    """What tells one save of ``step`` from another (a run trained anew in the same workdir): a hash
    of the step's ``_CHECKPOINT_METADATA``, which holds Orbax's start and commit times of the save
    and is kept by a copy. None when the checkpoint has no such file."""
    from slmjax.train.checkpoint import checkpoint_dir
    path = Path(checkpoint_dir(str(workdir))) / str(step) / "_CHECKPOINT_METADATA"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def release_fingerprint(path) -> str:
    """What tells one release checkpoint (a file, or a directory of files) from another at the
    same path: each file's name and stamp (size, mtime, ctime; see units_cache.file_stamp)."""
    from slmjax.analysis.zeroshot.units_cache import file_stamp
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    blob = json.dumps([(str(f.relative_to(path)) if f != path else "", file_stamp(f))
                       for f in files])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def restore(workdir, step):
    """(model cfg, params, step) of one checkpoint."""
    from slmjax.train.checkpoint import restore_params
    try:
        return restore_params(str(workdir), step=step)
    except Exception as e:  # noqa: BLE001 - one line naming the checkpoint, not a traceback
        raise ZeroShotError(f"cannot restore {workdir} step {step}: {describe(e)}") from None
