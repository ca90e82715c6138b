"""Audio sources: a folder, a fairseq TSV manifest, a JSONL manifest, or a TFDS dataset.

Every source lists its utterances up front (id, where the audio is, split when the source knows it),
so that all workers see the same ordered list without reading any audio.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Callable

import numpy as np

from slmjax.units.audio import AUDIO_EXTENSIONS, BadAudio, load_wave, pcm_to_float, resample
from slmjax.units.errors import UnitsError

SPLIT_DIRS = ("train", "valid", "validation", "dev", "test")  # split names a folder, .tsv or .jsonl may give


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One input: ``uid`` unique in the source, ``source`` (path or TFDS reference) for reports."""

    uid: str
    source: str
    split: str | None
    load: Callable[[], np.ndarray] = dataclasses.field(compare=False, repr=False)


def holdout_split(uid: str, holdout: float) -> str:
    """Stable hashed holdout: 'test' for about ``holdout`` of ids, else 'train'."""
    h = int.from_bytes(hashlib.sha256(uid.encode("utf-8")).digest()[:8], "little")
    return "test" if h / 2.0**64 < holdout else "train"


def list_utterances(spec: str, data_dir: str | None = None, holdout: float = 0.01) -> list[Utterance]:
    """All utterances of ``spec`` (comma-separated sources allowed), each with a split."""
    utts: list[Utterance] = []
    parts = [spec] if os.path.exists(spec) else [s for s in spec.split(",") if s]  # a path may hold commas
    for part in parts:
        utts.extend(_list_one(part, data_dir))
    if not utts:
        raise UnitsError(f"no audio found in --audio={spec}")
    seen = set()
    for u in utts:
        if u.uid in seen:
            raise UnitsError(f"duplicate utterance id {u.uid!r} in --audio={spec}")
        seen.add(u.uid)
    if not 0.0 <= holdout < 1.0:
        raise UnitsError(f"--holdout must be in [0, 1), got {holdout}")
    return [u if u.split else dataclasses.replace(u, split=holdout_split(u.uid, holdout)) for u in utts]


def _list_one(spec: str, data_dir: str | None) -> list[Utterance]:
    if spec.startswith("tfds:"):
        return _list_tfds(spec, data_dir)
    if os.path.isdir(spec):
        return _list_folder(spec)
    if not os.path.exists(spec):
        raise UnitsError(f"audio source not found: {spec}")
    if spec.endswith(".tsv"):
        return _list_tsv(spec)
    if spec.endswith(".jsonl"):
        return _list_jsonl(spec)
    if spec.lower().endswith(AUDIO_EXTENSIONS):
        return [_file_utt(os.path.splitext(os.path.basename(spec))[0], spec, None)]
    raise UnitsError(f"unknown audio source {spec!r}: expected a folder, .tsv, .jsonl, audio file or tfds:NAME:SPLIT")


def _file_utt(uid: str, path: str, split: str | None) -> Utterance:
    return Utterance(uid=_printable(uid), source=path, split=split, load=lambda: load_wave(path))


def _printable(name: str) -> str:
    """A file name's bytes that are not UTF-8 (kept by Python as lone surrogates, which cannot be
    hashed or written) as ``\\xNN`` escapes; UTF-8 names unchanged."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _read_lines(path: str) -> list[str]:
    """The lines of a UTF-8 manifest without line ends (LF or CRLF) or a leading byte-order mark;
    other bytes are one UnitsError."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return [ln.rstrip("\r\n") for ln in f]
    except UnicodeDecodeError as exc:
        raise UnitsError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None


def _list_folder(root: str) -> list[Utterance]:
    utts, seen, unreadable = [], set(), []
    # a subfolder that cannot be listed (permissions, a dropped network mount) is one skipped input
    # with its reason, in skipped.jsonl like bad audio, rather than audio missing without a word
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable.append):
        seen.add(os.path.realpath(dirpath))
        # hidden files and folders are not audio of the corpus: the temporary file of a write that was
        # killed (".x.wav.<pid>.<hex>.tmp.wav", possibly truncated), macOS "._x.wav", caches.
        # A linked folder already walked (a link back up the tree) would list its files again.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and os.path.realpath(os.path.join(dirpath, d)) not in seen)
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            top = rel.split("/")[0] if "/" in rel else None
            utts.append(_file_utt(os.path.splitext(rel)[0], path, top if top in SPLIT_DIRS else None))
    if any(os.path.realpath(e.filename) == os.path.realpath(root) for e in unreadable):
        raise UnitsError(f"cannot list audio folder {root}: {unreadable[0].strerror}")
    for exc in unreadable:
        rel = os.path.relpath(exc.filename, root).replace(os.sep, "/")
        top = rel.split("/")[0]
        utts.append(Utterance(uid=_printable(rel + "/"), source=exc.filename,
                              split=top if top in SPLIT_DIRS else None, load=_unreadable(exc)))
    return utts


def _unreadable(exc: OSError) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        raise BadAudio(f"folder cannot be read: {exc.strerror}")
    return load


def _split_from_name(path: str) -> str | None:
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem if stem in SPLIT_DIRS else None


def _list_tsv(path: str) -> list[Utterance]:
    """fairseq manifest: first line the root folder, then ``relpath<TAB>n_samples`` per line."""
    lines = [ln for ln in _read_lines(path) if ln.strip()]
    if not lines:
        raise UnitsError(f"empty TSV manifest: {path}")
    root = lines[0].strip()
    if not os.path.isabs(root):
        root = os.path.join(os.path.dirname(os.path.abspath(path)), root)
    split = _split_from_name(path)
    utts = []
    for ln in lines[1:]:
        rel = ln.split("\t")[0]
        utts.append(_file_utt(os.path.splitext(rel)[0], os.path.join(root, rel), split))
    return utts


def _list_jsonl(path: str) -> list[Utterance]:
    """JSONL manifest: one object per line with ``path`` and optional ``id``, ``split``, ``text``."""
    base = os.path.dirname(os.path.abspath(path))
    utts = []
    for lineno, ln in enumerate(_read_lines(path), 1):
        if not ln.strip():
            continue
        try:
            row = json.loads(ln)
            audio = row["path"]
            os.fspath(audio)  # TypeError unless a path string
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UnitsError(f"{path}:{lineno}: expected a JSON object with a 'path' field") from None
        split = row.get("split")
        if split is not None and split not in SPLIT_DIRS:
            raise UnitsError(f"{path}:{lineno}: unknown split {split!r} (expected one of {', '.join(SPLIT_DIRS)}, "
                             "or no split for the hashed --holdout)")
        full = audio if os.path.isabs(audio) else os.path.join(base, audio)
        uid = str(row["id"]) if row.get("id") not in (None, "") else os.path.splitext(audio)[0]
        utts.append(_file_utt(uid, full, split))
    return utts


def tfds_split_kind(split: str) -> str | None:
    """The split a TFDS split's utterances belong to: the SPLIT_DIRS name it is, or begins with
    before "_", "-" or "." (LibriSpeech's train_clean100, dev_other, test_clean); a slice of a
    split belongs to it, and a union ("a+b") to the split all its parts belong to. None (the
    hashed --holdout) for another name, or a union of parts of different splits."""
    kinds = set()
    for part in split.split("+"):
        m = re.match(r"(%s)(?:$|[_.-])" % "|".join(SPLIT_DIRS), part.split("[")[0].strip())
        kinds.add(m.group(1) if m else None)
    return kinds.pop() if len(kinds) == 1 else None


def _list_tfds(spec: str, data_dir: str | None) -> list[Utterance]:
    """``tfds:NAME[/CONFIG]:SPLIT[@RATE]`` read with ``tfds.data_source`` (random access, no
    TensorFlow). RATE (Hz) is needed where the Audio feature records no sample rate."""
    parts = spec.split(":", 2)  # a slice (train[:10%]) holds colons
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise UnitsError(f"TFDS source must be tfds:NAME[/CONFIG]:SPLIT[@RATE], got {spec!r}")
    _, name, split = parts
    given_sr = None
    if "@" in split:
        split, _, rate = split.rpartition("@")
        if not rate.isdigit() or int(rate) <= 0 or not split:
            raise UnitsError(f"{spec}: @RATE must be a sample rate in Hz (e.g. @48000), got @{rate}")
        given_sr = int(rate)
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # noqa: BLE001
        raise UnitsError(f"cannot open {spec} (data_dir={data_dir}): {str(exc).splitlines()[0]}") from None
    features = builder.info.features
    audio_key = next((k for k, v in features.items() if type(v).__name__ == "Audio"), None)
    if audio_key is None:
        raise UnitsError(f"{spec} has no Audio feature")
    recorded = getattr(features[audio_key], "sample_rate", None)
    if recorded and given_sr and int(recorded) != given_sr:
        raise UnitsError(f"{spec}: @{given_sr} but the dataset's {audio_key!r} feature records "
                         f"{int(recorded)} Hz")
    if not (recorded or given_sr):  # Common Voice's, for one (48 kHz): a guess gives wrong units
        raise UnitsError(f"{spec}: the dataset's {audio_key!r} feature records no sample rate; "
                         f"give it as {spec}@RATE (Hz)")
    sr = int(recorded or given_sr)

    def loader(i):
        def load():
            raw = source[i][audio_key]
            if isinstance(raw, (bytes, np.bytes_)) or (isinstance(raw, np.ndarray) and raw.dtype.kind in "SO"):
                return _decode_bytes(spec, i, raw)  # a lazy_decode config keeps each file's encoded bytes
            wave = pcm_to_float(np.asarray(raw))
            if wave.ndim == 2:
                wave = wave.mean(axis=1)
            return resample(wave, sr)

        return load

    utts = []
    base_split = tfds_split_kind(split)
    for i in range(len(source)):  # ids by index: reading each record's own id would decode its audio
        utts.append(Utterance(uid=f"{name}:{split}:{i}", source=f"{spec}#{i}", split=base_split, load=loader(i)))
    return utts


def _decode_bytes(spec: str, i: int, raw) -> np.ndarray:
    """Mono 16 kHz wave of an encoded audio file held in a TFDS record (decoded as a file on disk
    is, at its own sample rate); BadAudio naming the record when it cannot be decoded."""
    import io

    data = raw.item() if isinstance(raw, np.ndarray) else raw
    try:
        return load_wave(io.BytesIO(bytes(data)))
    except BadAudio as exc:
        raise BadAudio(f"unreadable: encoded audio in {spec}#{i}: "
                       f"{str(exc).removeprefix('unreadable: ')}") from None
