"""The unit dataset writer: ArrayRecord shards, per-shard part files, and the merge into manifest.json.

Shards are a pure function of the utterance list and ``shard_utterances``, never of the number of
workers: worker w of N encodes the shards whose global index is w mod N, so N workers and one worker
write byte-identical datasets. A shard is complete when its part file ``parts/<shard>.json`` exists
(written after the shard itself, both through a temp name and a rename); reruns skip complete shards,
but try again the inputs a shard skipped (a file fixed or replaced since), keeping the records it has.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import time

import numpy as np

from slmjax import fileio
from slmjax.errortext import describe
from slmjax.units import ids as unit_ids
from slmjax.units.audio import BadAudio, check_wave, nothing_usable, skip_row, write_skipped
from slmjax.units.errors import UnitsError, make_dir
from slmjax.units.sources import Utterance

FORMAT_VERSION = 1
DURATIONS_DTYPE = "uint32"  # a run of one unit can last a whole file: 16 bits held only 11 min at 100 Hz


@dataclasses.dataclass
class Shard:
    split: str
    name: str
    index: int  # global index over all splits: decides the worker
    utts: list


def plan_shards(utts: list[Utterance], shard_utterances: int) -> list[Shard]:
    """Split-wise, source-ordered chunks of at most ``shard_utterances`` utterances."""
    if shard_utterances < 1:
        raise UnitsError(f"--shard_utterances must be >= 1, got {shard_utterances}")
    by_split: dict[str, list] = {}
    for u in utts:
        by_split.setdefault(u.split, []).append(u)
    shards = []
    for split in sorted(by_split):
        items = by_split[split]
        n = -(-len(items) // shard_utterances)
        for i in range(n):
            chunk = items[i * shard_utterances : (i + 1) * shard_utterances]
            shards.append(Shard(split, f"{split}-{i:05d}-of-{n:05d}.array_record", len(shards), chunk))
    return shards


def plan_fingerprint(shards: list[Shard], identity: dict, options: dict, sources: bool = True) -> str:
    """The plan's identity: tokenizer, options, shards, utterance ids and (``sources``) where each
    utterance is read from, so that a rerun over another folder whose files have the same names
    is another plan (plans pinned by an older slmjax hold no sources: ``sources=False``)."""
    h = hashlib.sha256(json.dumps([identity, options], sort_keys=True).encode())
    for s in shards:
        h.update(s.name.encode())
        for u in s.utts:
            h.update(b"\0" + u.uid.encode())
            if sources:
                h.update(b"\1" + _where(u.source).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _where(source: str) -> str:
    """An utterance's source as the same file reads from any working directory or through any
    link to its folder."""
    if source.startswith("tfds:"):
        return source
    folder, name = os.path.split(os.path.abspath(source))
    return os.path.join(_real_folder(folder), name)


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)  # once per folder, not per file (a corpus is many files)


def _atomic_json(path: str, obj) -> None:
    fileio.atomic_write_json(path, obj, indent=1)


def pin_plan(out: str, fingerprint: str, create: bool = True, older: str | None = None) -> None:
    """Check ``fingerprint`` against ``out/plan.json``. With ``create`` (encode) make ``out`` and pin
    the plan if there is none; without (merge) a missing plan is an error, as a corrupt or different one.
    ``older``: the same plan's fingerprint as an older slmjax pinned it, accepted too."""
    path = os.path.join(out, "plan.json")
    if create:
        make_dir(out)
        make_dir(os.path.join(out, "parts"))
    pinned = _pinned(path)
    if pinned is None:
        if not create:
            raise UnitsError(f"{out} holds no encoded dataset (no plan.json): run `slmjax-units encode` first")
        if _create_new(path, {"fingerprint": fingerprint}):
            return
        pinned = _pinned(path)  # another worker pinned its plan first
    if pinned not in (fingerprint, older):
        raise UnitsError(f"{out} holds a dataset from another source, tokenizer or options; "
                         "use a new --out (merge needs the flags the dataset was encoded with)")


def pinned_plan(out: str) -> str | None:
    """The plan fingerprint pinned in ``out``; None when there is none."""
    return _pinned(os.path.join(out, "plan.json"))


def _pinned(path: str) -> str | None:
    """The fingerprint in plan.json ``path``; None when there is none."""
    try:
        with open(path) as f:
            return json.load(f)["fingerprint"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        out = os.path.dirname(path)
        raise UnitsError(f"{path} is corrupt ({describe(exc)}); remove {out} or use a new --out") from None


def _create_new(path: str, obj) -> bool:
    """Write ``obj`` as JSON to ``path`` unless it exists (hosts starting together race here); False if
    it did. The file appears whole, by a hard link from a temporary name (a rename where links fail)."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            if os.path.exists(path):
                return False
            os.replace(tmp, path)
        return True
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def part_path(out: str, shard: Shard) -> str:
    return os.path.join(out, "parts", shard.name + ".json")


def is_complete(out: str, shard: Shard) -> bool:
    return os.path.exists(part_path(out, shard))


def read_part(out: str, shard: Shard) -> dict | None:
    """The part file of ``shard``; None before the shard's first run."""
    path = part_path(out, shard)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UnitsError(f"{path} is corrupt ({describe(exc)}); remove it to encode {shard.name} again") from None


def pending(out: str, shard: Shard) -> list[Utterance]:
    """The utterances of ``shard`` still to encode: all before its first run, then those it skipped."""
    part = read_part(out, shard)
    if part is None:
        return shard.utts
    skipped = {row["id"] for row in part["skipped"]}
    return [u for u in shard.utts if u.uid in skipped]


def encode_shard(tok, shard: Shard, out: str, durations: bool = False, min_seconds: float = 0.0, on_utt=None) -> dict:
    """Encode one shard's utterances, write the shard then its part file; returns the part dict.

    A shard encoded before keeps its records and counts: only the inputs it skipped are tried again,
    and its files are rewritten (in source order) only when one of them now encodes."""
    min_samples = max(tok.features.min_samples, int(round(min_seconds * 16000)))
    prev = read_part(out, shard)
    kept = _kept_records(out, shard, prev, durations)
    part = dict(prev or {"utterances": 0, "tokens": 0, "units": 0, "frames": 0, "seconds": 0.0}, ids=[], skipped=[])
    records, dur_records = [], []
    for u in shard.utts:
        t0 = time.perf_counter()
        if u.uid in kept:
            rec, dur = kept[u.uid]
        else:
            (rec, dur), seconds = _encode_utt(tok, u, min_samples, durations, part)
            if on_utt is not None:
                on_utt(seconds, time.perf_counter() - t0)
            if rec is None:
                continue
        records.append(rec)
        dur_records.append(dur)
        part["ids"].append(u.uid)
    if len(records) > len(kept):
        if prev is not None:  # a kill while the shard is rewritten then leaves it to encode again, not mislabelled,
            os.remove(part_path(out, shard))  # and no manifest describing the shard as it was
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(out, "manifest.json"))
        _write_records(os.path.join(out, shard.name), records)
        if durations:
            _write_records(os.path.join(out, durations_name(shard.name)), dur_records)
    _atomic_json(part_path(out, shard), part)
    return part


def _encode_utt(tok, u: Utterance, min_samples: int, durations: bool, part: dict):
    """((record, durations record or None), seconds) of ``u``, its counts added to ``part``; when it
    cannot be encoded ((None, None), seconds) and its skipped row added."""
    seconds = 0.0
    try:
        wave = u.load()
        seconds = wave.size / 16000.0
        check_wave(wave, min_samples)
        frames = tok.frame_units(wave)
        units, durs = unit_ids.collapse(frames, return_durations=True)
        ids = tok.coarse.encode(units) if tok.coarse is not None else units
        if ids.size == 0:
            raise BadAudio("too short: no feature frames")
        rec = unit_ids.to_record(unit_ids.with_eos(ids, tok.eos_id), tok.dtype)
        dur = unit_ids.to_record(np.append(durs, 0), DURATIONS_DTYPE) if durations else None
    except Exception as exc:  # noqa: BLE001 - bad audio, a decoder or feature failure skips this input only
        part["skipped"].append(skip_row(u, exc))
        return (None, None), seconds
    part["utterances"] += 1
    part["tokens"] += int(ids.size) + 1
    part["units"] += int(units.size)
    part["frames"] += int(frames.size)
    part["seconds"] += seconds
    return (rec, dur), seconds


def _kept_records(out: str, shard: Shard, part: dict | None, durations: bool) -> dict:
    """uid -> (record, durations record or None) of the inputs ``shard`` encoded in an earlier run."""
    ids = part["ids"] if part else []
    if not ids:
        return {}
    records = _read_kept(out, shard, shard.name, len(ids))
    durs = _read_kept(out, shard, durations_name(shard.name), len(ids)) if durations else [None] * len(ids)
    return dict(zip(ids, zip(records, durs)))


def _read_kept(out: str, shard: Shard, name: str, n: int) -> list[bytes]:
    """The ``n`` records of the file ``name`` of an encoded ``shard``, or one UnitsError."""
    try:
        records = _read_shards(out, [name], bytes)
    except (OSError, RuntimeError, ValueError) as exc:  # ArrayRecord reports a missing or broken file as RuntimeError
        why = f"cannot be read ({describe(exc)})"
    else:
        if len(records) == n:
            return records
        why = f"holds {len(records)} records but its part file lists {n}"
    raise UnitsError(f"{name} {why}; remove {part_path(out, shard)} to encode the shard again")


def _write_records(path: str, records: list[bytes]) -> None:
    from array_record.python.array_record_module import ArrayRecordWriter

    with fileio.atomic_path(path) as tmp:
        writer = ArrayRecordWriter(tmp, "group_size:1")
        for r in records:
            writer.write(r)
        writer.close()


def merge(out: str, shards: list[Shard], tok, synthetic: bool = False, durations: bool = False) -> dict:
    """Write skipped.jsonl and manifest.json from the part files; needs every shard complete."""
    missing = [s.name for s in shards if not is_complete(out, s)]
    if missing:
        raise UnitsError(f"{len(missing)} shard(s) not encoded yet (first: {missing[0]}); run the remaining workers first")
    manifest = try_merge(out, shards, tok, synthetic, durations)
    if manifest is None:
        raise UnitsError("a shard's part file went away during the merge (an encode worker retrying its skipped "
                         "inputs); that worker merges when it is done, or merge again then")
    return manifest


def try_merge(out: str, shards: list[Shard], tok, synthetic: bool = False, durations: bool = False) -> dict | None:
    """:func:`merge`, or None while a shard has no part file (not encoded yet, or a retry rewriting it).

    A part file rewritten by a retry on another worker while this merge ran makes it merge again: that
    worker's own merge may have been written before this one, which would leave stale counts."""
    parts = _read_parts(out, shards)
    while parts is not None:
        manifest = _write_merged(out, shards, parts, tok, synthetic, durations)
        again = _read_parts(out, shards)
        if again == parts:
            return manifest
        parts = again
    return None  # a worker rewriting a shard merges once its part file is back


def _read_parts(out: str, shards: list[Shard]) -> list[dict] | None:
    """Every shard's part file, in shard order; None at the first shard without one."""
    parts = []
    for s in shards:
        part = read_part(out, s)
        if part is None:
            return None
        parts.append(part)
    return parts


def _write_merged(out: str, shards: list[Shard], parts: list[dict], tok, synthetic: bool, durations: bool) -> dict:
    splits, skipped = {}, []
    totals = {"units": 0, "tokens": 0, "utterances": 0}
    for s, part in zip(shards, parts):
        skipped.extend(part["skipped"])
        if not part["utterances"]:
            continue
        sp = splits.setdefault(s.split, {"shards": [], "utterances": 0, "tokens": 0, "units": 0, "frames": 0, "seconds": 0.0})
        sp["shards"].append(s.name)
        for key in ("utterances", "tokens", "units", "frames", "seconds"):
            sp[key] += part[key]
        totals["units"] += part["units"]
        totals["tokens"] += part["tokens"] - part["utterances"]
        totals["utterances"] += part["utterances"]
    write_skipped(os.path.join(out, "skipped.jsonl"), skipped)
    if not totals["utterances"]:
        raise nothing_usable("encoded", skipped, os.path.join(out, "skipped.jsonl"))
    for sp in splits.values():
        sp["seconds"] = round(sp["seconds"], 3)
    coarse = None
    if tok.coarse is not None:
        coarse = dict(tok.identity["coarse"], units=totals["units"], tokens=totals["tokens"],
                      compression_ratio=round(totals["units"] / max(totals["tokens"], 1), 4))
    manifest = {"format_version": FORMAT_VERSION, "tokenizer": tok.identity, "vocab_size": tok.vocab_size,
                "eos_id": tok.eos_id, "pad_id": tok.pad_id, "dtype": tok.dtype, "frame_rate": tok.frame_rate,
                "splits": splits, "skipped": len(skipped), "synthetic": bool(synthetic), "coarse": coarse,
                "durations": bool(durations), "tokenizer_dir": tok.directory}
    if durations:
        manifest["durations_dtype"] = DURATIONS_DTYPE
    _atomic_json(os.path.join(out, "manifest.json"), manifest)
    return manifest


def read_dataset(out: str, split: str) -> list[np.ndarray]:
    """All records of one split as int32 arrays (for tests and inspection)."""
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    return _read_shards(out, manifest["splits"][split]["shards"], lambda r: unit_ids.from_record(r, manifest["dtype"]))


def read_durations(out: str, split: str) -> list[np.ndarray]:
    """The per-unit durations (frames) of one split, aligned with :func:`read_dataset` (EOS: 0)."""
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    if not manifest.get("durations"):
        raise UnitsError(f"{out} was encoded without --durations")
    names = [durations_name(name) for name in manifest["splits"][split]["shards"]]
    dtype = np.dtype(manifest.get("durations_dtype", "uint16")).newbyteorder("<")  # uint16 before the field existed
    return _read_shards(out, names, lambda r: np.frombuffer(r, dtype).astype(np.int64))


def durations_name(shard_name: str) -> str:
    return shard_name.replace(".array_record", ".durations.array_record")


def _read_shards(out: str, names: list[str], decode) -> list[np.ndarray]:
    from array_record.python.array_record_module import ArrayRecordReader

    seqs = []
    for name in names:
        reader = ArrayRecordReader(os.path.join(out, name))
        seqs.extend(decode(r) for r in reader.read_all())
        reader.close()
    return seqs
