"""Checks that a benchmark root follows the official layouts (reference BENCHMARKS.md).

``check(root)`` returns a list of problems (empty when the root is valid) for every set it finds:
``lexical/{dev,test}``, ``syntactic/{dev,test}`` (gold.csv columns, one wav per row and one row per wav,
16 kHz mono, each pair key holding exactly one correct and one incorrect row, positional pairing
agreeing with the keys for sBLIMP) and ``sSC``/``tSC`` (contiguous indices, ``2i`` correct and ``2i+1``
incorrect of the same story id).
"""

from __future__ import annotations

import csv
import glob
import os
import re
from collections import defaultdict

import soundfile as sf

from slmjax.synth.benchio import LEXICAL_COLUMNS, SYNTACTIC_COLUMNS
from slmjax.synth.sblimp import TYPES

_CLOZE = re.compile(r"^(\d+)_([^_]+)_(correct|incorrect)\.wav$")


def _wav_problem(path: str) -> str | None:
    try:
        info = sf.info(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a problem to report
        return f"{path}: unreadable ({e})"
    if info.samplerate != 16000 or info.channels != 1 or info.frames == 0:
        return f"{path}: {info.samplerate} Hz, {info.channels} channels, {info.frames} frames (want 16 kHz mono)"
    return None


def _check_gold(folder: str, columns: tuple[str, ...], key: tuple[str, ...],
                check_audio: bool) -> tuple[list[str], list[dict]]:
    """(problems, rows); rows is empty when the file is missing or its columns are wrong."""
    gold = os.path.join(folder, "gold.csv")
    if not os.path.isfile(gold):
        return [f"{gold}: missing"], []
    with open(gold, newline="") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        lines = list(reader)
    if header != columns:
        return [f"{gold}: columns {','.join(header)} != {','.join(columns)}"], []
    problems = [f"{gold}:{n}: {len(line)} fields, want {len(columns)}"
                for n, line in enumerate(lines, 2) if line and len(line) != len(columns)]
    rows = [dict(zip(columns, line)) for line in lines if len(line) == len(columns)]
    stems = [r["filename"] for r in rows]
    if len(set(stems)) != len(stems):
        problems.append(f"{gold}: a filename occurs twice")
    wavs = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(folder, "*.wav"))}
    missing, extra = set(stems) - wavs, wavs - set(stems)
    if missing:
        problems.append(f"{folder}: {len(missing)} gold rows without a wav (e.g. {sorted(missing)[0]})")
    if extra:
        problems.append(f"{folder}: {len(extra)} wavs without a gold row (e.g. {sorted(extra)[0]})")
    groups = defaultdict(list)
    for r in rows:
        if r["correct"] not in ("0", "1"):
            problems.append(f"{gold}: correct={r['correct']!r} for {r['filename']} (want 0 or 1)")
        groups[tuple(r[k] for k in key)].append(r["correct"])
    bad = [k for k, v in groups.items() if sorted(v) != ["0", "1"]]
    if bad:
        problems.append(f"{gold}: {len(bad)} pair keys {key} without exactly one correct and one incorrect row "
                        f"(e.g. {bad[0]})")
    if check_audio:
        problems += [p for p in (_wav_problem(os.path.join(folder, s + ".wav")) for s in sorted(wavs)) if p]
    return problems, rows


def check_lexical(folder: str, check_audio: bool = True) -> list[str]:
    problems, rows = _check_gold(folder, LEXICAL_COLUMNS, ("id", "voice"), check_audio)
    for r in rows:
        if not r["length"].isdigit() or int(r["length"]) != len(r["phones"].split()):
            problems.append(f"{folder}/gold.csv: {r['filename']}: length {r['length']} != number of phones")
        try:
            float(r["frequency"])
        except ValueError:
            problems.append(f"{folder}/gold.csv: {r['filename']}: frequency {r['frequency']!r} is not a number")
        if r["correct"] == "1" and not r["word"]:
            problems.append(f"{folder}/gold.csv: {r['filename']}: a word row without its word")
    return problems


def check_syntactic(folder: str, check_audio: bool = True) -> list[str]:
    problems, rows = _check_gold(folder, SYNTACTIC_COLUMNS, ("type", "subtype", "id", "voice"), check_audio)
    unknown = {r["type"] for r in rows} - set(TYPES)
    if unknown:
        problems.append(f"{folder}/gold.csv: unknown sBLIMP types {sorted(unknown)}")
    # the official code pairs the i-th correct row with the i-th incorrect one: it must agree with the keys
    key = lambda r: (r["type"], r["subtype"], r["id"], r["voice"])  # noqa: E731
    good = [key(r) for r in rows if r["correct"] == "1"]
    bad = [key(r) for r in rows if r["correct"] == "0"]
    if good != bad:
        problems.append(f"{folder}/gold.csv: positional pairing (i-th correct with i-th incorrect) disagrees "
                        "with the (type, subtype, id, voice) keys")
    return problems


def check_cloze(folder: str, check_audio: bool = True) -> list[str]:
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.wav")))
    if not names:
        return [f"{folder}: no wavs"]
    problems, by_index = [], {}
    for name in names:
        m = _CLOZE.match(name)
        if not m:
            problems.append(f"{folder}: {name} is not <index>_<story_id>_<correct|incorrect>.wav")
            continue
        i = int(m.group(1))
        if i in by_index:
            problems.append(f"{folder}: index {i} is used twice ({by_index[i][2]} and {name})")
            continue
        by_index[i] = (m.group(2), m.group(3), name)
    if sorted(by_index) != list(range(len(by_index))) or len(by_index) % 2:
        problems.append(f"{folder}: indices are not 0..2n-1")
    for i in range(0, len(by_index) - 1, 2):
        a, b = by_index.get(i), by_index.get(i + 1)
        if not a or not b or a[1] != "correct" or b[1] != "incorrect" or a[0] != b[0]:
            problems.append(f"{folder}: files {i} and {i + 1} are not a correct/incorrect pair of one story")
    if check_audio:
        problems += [p for p in (_wav_problem(os.path.join(folder, n)) for n in names) if p]
    return problems


def check(root: str, check_audio: bool = True) -> tuple[list[str], list[str]]:
    """(sets found, problems) for a benchmark root."""
    found, problems = [], []
    for kind, fn in (("lexical", check_lexical), ("syntactic", check_syntactic)):
        for split in ("dev", "test"):
            folder = os.path.join(root, kind, split)
            if os.path.isdir(folder):
                found.append(f"{kind}/{split}")
                problems += fn(folder, check_audio)
    for name in ("sSC", "tSC"):
        folder = os.path.join(root, name)
        if os.path.isdir(folder):
            found.append(name)
            problems += check_cloze(folder, check_audio)
    return found, problems
