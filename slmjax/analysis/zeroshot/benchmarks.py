"""Benchmark sets in their official layouts: discovery, loading and validation.

Layouts (see BENCHMARKS.md):
  ZeroSpeech 2021 sLM21: ``<root>/{lexical,syntactic}/{dev,test}/*.wav`` + ``gold.csv``.
  Spoken / topic StoryCloze: ``<root>/sSC/`` and ``<root>/tSC/`` (also ``sStoryCloze``,
  ``spoken_storycloze``, ... ) with ``{2i}_{story}_correct.wav`` / ``{2i+1}_{story}_incorrect.wav``.

Every problem found is collected as a :class:`Problem`; item-level problems (a missing wav, an
unpaired row, a duplicate stem) drop the item and are recorded, structural ones (a gold.csv that
cannot be read, a missing column) make the whole set unusable. A sLM21 split with audio but no
gold.csv (the public test download: the organisers keep its gold) is *submission-only*: every file
is scored for the submission file, no accuracy.
"""

from __future__ import annotations

import math

import csv
import dataclasses
import functools
import hashlib
import io
import json
import os
import re
from collections import defaultdict
from pathlib import Path

from slmjax import fileio
from slmjax.analysis.zeroshot.errors import ZeroShotError

AUDIO_EXTS = (".wav", ".flac")
LEXICAL_COLUMNS = ("filename", "id", "voice", "frequency", "word", "phones", "length", "correct")
SYNTACTIC_COLUMNS = ("filename", "type", "subtype", "id", "voice", "transcription", "correct")
SBLIMP_TYPES = (
    "anaphor_agreement", "argument_structure", "binding", "control_raising",
    "determiner_noun_agreement", "ellipsis", "filler_gap_dependency", "irregular_forms",
    "island_effects", "npi_licensing", "quantifiers", "subject_verb_agreement")
_SC_NAME = re.compile(r"^(\d+)_(.+)_(correct|incorrect)$")
_SSC_DIR = re.compile(r"^(s|spoken)[-_ ]?(sc|story[-_ ]?cloze)([-_ .].*)?$", re.IGNORECASE)
_TSC_DIR = re.compile(r"^(t|topic)[-_ ]?(sc|story[-_ ]?cloze)([-_ .].*)?$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing to know about a benchmark set. ``severity`` is ``error``, ``warning`` or ``note``
    (not a problem: e.g. a submission-only split)."""
    severity: str
    where: str
    what: str

    def __str__(self):
        return f"{self.severity}: {self.where}: {self.what}"


@dataclasses.dataclass(frozen=True)
class Pair:
    """A forced choice: ``pos`` should score higher than ``neg``.

    ``item`` groups the pairs that are averaged over voices (the official unit of accuracy);
    ``group`` is the sBLIMP type (macro mean) and ``frequency`` the sWUGGY word frequency (None:
    unknown, so the pair is left out of the frequency rows).
    """
    pos: str
    neg: str
    item: tuple
    voice: str = ""
    group: str = ""
    subgroup: str = ""
    frequency: int | None = None


@dataclasses.dataclass
class Benchmark:
    """One benchmark split: its audio files by stem, its pairs and what was dropped."""
    name: str            # e.g. "swuggy_dev", "sblimp_test", "ssc", "tsc"
    task: str            # "swuggy" | "sblimp" | "ssc" | "tsc"
    split: str           # "dev" | "test" | "" (StoryCloze)
    directory: Path
    files: dict          # stem -> audio path: every file a submission needs (sLM21: the folder's)
    pairs: list
    problems: list
    submission: str      # relative path of the official submission file
    submission_only: bool = False   # no gold.csv: ``files`` holds every audio file, ``pairs`` none

    @property
    def errors(self):
        return [p for p in self.problems if p.severity == "error"]

    @functools.cached_property
    def fingerprint(self) -> str:
        """What its scores depend on besides the model: gold.csv and each file's stamp (size,
        mtime, ctime; see units_cache.file_stamp), so a set made again at the same path differs."""
        from slmjax.analysis.zeroshot.units_cache import file_stamp
        gold = Path(self.directory) / "gold.csv"
        gold_hash = hashlib.sha256(gold.read_bytes()).hexdigest() if gold.is_file() else None
        stamps = sorted((stem, file_stamp(path)) for stem, path in self.files.items())
        blob = json.dumps([gold_hash, stamps])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def scores_block(self):
        """The scores.json block that records this set."""
        return "submission_only" if self.submission_only else "tasks"


def _audio_files(directory: Path, problems: list, recursive: bool = False) -> dict:
    found = {}
    walker = directory.rglob("*") if recursive else directory.iterdir()
    for path in sorted(walker):
        if path.suffix.lower() not in AUDIO_EXTS or not path.is_file():
            continue
        # hidden files (and files in hidden folders) are not benchmark audio: the temporary file of
        # a killed write (".x.wav.<pid>.<hex>.tmp.wav", possibly truncated), macOS "._x.wav"
        if any(part.startswith(".") for part in path.relative_to(directory).parts):
            continue
        if path.stem in found:
            problems.append(Problem("error", str(path),
                                    f"duplicate stem {path.stem!r} (also {found[path.stem]})"))
            found[path.stem] = None   # ambiguous: neither copy is used
            continue
        found[path.stem] = path
    return found


def _read_gold(path: Path, columns: tuple, problems: list):
    where = str(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")   # a byte order mark is not part of the header
    except UnicodeDecodeError as e:
        line, byte = fileio.undecodable_at(e)
        problems.append(Problem("error", f"{where}:{line}", f"not UTF-8 text (byte "
                                f"{byte:#04x}); save gold.csv as UTF-8"))
        return None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            problems.append(Problem("error", where, f"bad columns: missing {missing}; "
                                    f"expected {','.join(columns)}, found {','.join(header)}"))
            return None
        rows, seen = [], {}
        for line, row in enumerate(reader, start=2):
            stem = (row["filename"] or "").strip()
            stem = os.path.splitext(stem)[0] if stem.lower().endswith(AUDIO_EXTS) else stem
            if not stem:
                problems.append(Problem("error", f"{where}:{line}", "empty filename"))
                continue
            if stem in seen:
                problems.append(Problem("error", f"{where}:{line}",
                                        f"duplicate stem {stem!r} (first on line {seen[stem]})"))
                rows = [r for r in rows if r["_stem"] != stem]
                continue
            seen[stem] = line
            if (row["correct"] or "").strip() not in ("0", "1"):
                problems.append(Problem("error", f"{where}:{line}",
                                        f"bad value in column correct: {row['correct']!r}"))
                continue
            row = {k: (v or "").strip() for k, v in row.items() if k is not None}
            row["_stem"], row["_line"] = stem, line
            rows.append(row)
    except csv.Error as e:
        problems.append(Problem("error", f"{where}:{reader.line_num}", f"not a CSV file ({e})"))
        return None
    return rows


# The official scripts that pair a gold.csv's rows by position (the i-th correct row with the i-th
# incorrect one) rather than on keys: both of the zerospeech2021 package (the newer zerospeech
# toolkit joins sWUGGY on (voice, id), as slmjax joins both).
_POSITIONAL_SCRIPT = {"sblimp": "the official sBLIMP script",
                      "swuggy": "the zerospeech2021 package's lexical script"}


def _pair_rows(rows, key_fn, where, problems, make_pair, all_rows, positional):
    """Join correct (1) and incorrect (0) rows on ``key_fn``; with ``positional`` (the name of an
    official script that pairs rows by position), check that the file-order pairing of
    ``all_rows`` (the whole gold.csv) agrees."""
    by_key = defaultdict(lambda: ([], []))
    for r in rows:
        by_key[key_fn(r)][0 if r["correct"] == "1" else 1].append(r)
    pairs = []
    for key, (pos, neg) in by_key.items():
        if len(pos) != 1 or len(neg) != 1:
            lines = [r["_line"] for r in pos + neg]
            problems.append(Problem("error", where, f"unpaired item {key}: {len(pos)} correct and "
                                    f"{len(neg)} incorrect rows (lines {lines})"))
            continue
        pairs.append(make_pair(pos[0], neg[0]))
    if not positional:
        return pairs
    pos_rows = [r for r in all_rows if r["correct"] == "1"]
    neg_rows = [r for r in all_rows if r["correct"] == "0"]
    by_position = sum(1 for a, b in zip(pos_rows, neg_rows) if key_fn(a) != key_fn(b))
    if by_position or len(pos_rows) != len(neg_rows):
        problems.append(Problem("warning", where, f"file-order pairing (used by {positional}) "
                                f"disagrees with the key join ({by_position} of "
                                f"{min(len(pos_rows), len(neg_rows))} pairs differ, {len(pos_rows)} "
                                f"correct vs {len(neg_rows)} incorrect rows); slmjax joins on keys"))
    return pairs


def _frequency(value, where, problems):
    """A word count (``1e3`` and ``5.0`` are counts too); None when empty (unknown: the official
    script reads it as missing, in no frequency band) or not a count (with a problem)."""
    if not value:
        return None
    try:
        count = float(value)
    except ValueError:
        count = float("nan")
    if count.is_integer() and count >= 0:
        return int(count)
    problems.append(Problem("error", where, f"bad value in column frequency: {value!r} (not a "
                            "word count; the item is left out of the frequency rows)"))
    return None


def submission_file(task: str, split: str = "") -> str | None:
    """A set's official submission file, relative to a convention folder: ``lexical/<split>.txt``
    (sWUGGY), ``syntactic/<split>.txt`` (sBLIMP), ``sSC.txt``, ``tSC.txt``; None for an unknown
    task or an sLM21 set without a split."""
    if task in ("swuggy", "sblimp"):
        return f"{'lexical' if task == 'swuggy' else 'syntactic'}/{split}.txt" if split else None
    return {"ssc": "sSC.txt", "tsc": "tSC.txt"}.get(task)


def load_slm21(directory: Path, task: str, split: str) -> Benchmark:
    """Load ``<root>/lexical/<split>`` (sWUGGY) or ``<root>/syntactic/<split>`` (sBLIMP)."""
    directory = Path(directory)
    problems = []
    columns = LEXICAL_COLUMNS if task == "swuggy" else SYNTACTIC_COLUMNS
    gold_path = directory / "gold.csv"
    audio = _audio_files(directory, problems)
    bench = Benchmark(f"{task}_{split}", task, split, directory, {}, [], problems,
                      submission_file(task, split))
    if not gold_path.is_file():
        if not audio:
            problems.append(Problem("error", str(gold_path), "gold.csv is missing (and no audio)"))
            return bench
        bench.submission_only = True
        bench.files = {s: path for s, path in audio.items() if path is not None}
        problems.append(Problem("note", str(directory), f"no gold.csv (as in the public {split} "
                                f"download): submission only, its {len(bench.files)} files scored "
                                f"for {bench.submission}, no accuracy"))
        return bench
    rows = _read_gold(gold_path, columns, problems)
    if rows is None:
        return bench
    usable = []
    for r in rows:
        if r["_stem"] not in audio:
            problems.append(Problem("error", f"{gold_path}:{r['_line']}",
                                    f"missing wav for {r['_stem']!r}"))
        elif audio[r["_stem"]] is not None:
            usable.append(r)
    gold_stems = {r["_stem"] for r in rows}
    extra = sorted(s for s in audio if s not in gold_stems)
    if extra:
        problems.append(Problem("warning", str(directory), f"{len(extra)} audio files not in "
                                f"gold.csv (scored for {bench.submission} only, in no pair), e.g. "
                                f"{extra[:3]}"))
    if task == "swuggy":
        def key(r):
            return (r["id"], r["voice"])

        def make(p, n):
            freq = _frequency(p["frequency"], f"{gold_path}:{p['_line']}", problems)
            return Pair(p["_stem"], n["_stem"], (p["id"],), p["voice"], frequency=freq)
    else:
        def key(r):
            return (r["type"], r["subtype"], r["id"], r["voice"])

        def make(p, n):
            return Pair(p["_stem"], n["_stem"], (p["type"], p["subtype"], p["id"]), p["voice"],
                        group=p["type"], subgroup=p["subtype"])
    bench.pairs = _pair_rows(usable, key, str(gold_path), problems, make, rows,
                             positional=_POSITIONAL_SCRIPT[task])
    unknown = sorted({p.group for p in bench.pairs} - set(SBLIMP_TYPES)) if task == "sblimp" else []
    if unknown:
        problems.append(Problem("warning", str(gold_path), f"types outside the 12 of sBLIMP: "
                                f"{unknown} (each still counts as one type in the macro mean)"))
    # the official tools refuse a submission that lacks any wav of the split, in gold.csv or not
    bench.files = {s: path for s, path in audio.items() if path is not None}
    return bench


def load_storycloze(directory: Path, task: str) -> Benchmark:
    """Load a spoken (``ssc``) or topic (``tsc``) StoryCloze folder; pairs by file index."""
    directory = Path(directory)
    problems = []
    audio = _audio_files(directory, problems, recursive=True)
    bench = Benchmark(task, task, "", directory, {}, [], problems, submission_file(task))
    found = {"correct": defaultdict(list), "incorrect": defaultdict(list)}
    for stem, path in audio.items():
        m = _SC_NAME.match(stem)
        if not m:
            problems.append(Problem("error", str(path), "file name is not "
                                    "<index>_<story>_correct|incorrect"))
            continue
        if path is None:
            continue
        found[m.group(3)][int(m.group(1))].append((m.group(2), stem))
    for kind, by_index in found.items():   # "0_a" and "00_b" share index 0: neither is used
        for index, files in sorted(by_index.items()):
            if len(files) > 1:
                problems.append(Problem("error", str(directory), f"{len(files)} {kind} files with "
                                        f"index {index}: {[stem for _, stem in files]} (none used)"))
    correct, incorrect = ({i: files[0] for i, files in by_index.items() if len(files) == 1}
                          for by_index in found.values())
    used = set()
    for index in sorted(correct):
        story, stem = correct[index]
        partner = next((incorrect[j] for j in (index + 1, index)
                        if j in incorrect and incorrect[j][0] == story and j not in used), None)
        if partner is None:
            problems.append(Problem("error", str(directory / stem), f"unpaired item: no incorrect "
                                    f"file {index + 1}_{story}_incorrect"))
            continue
        used.add(index + 1 if incorrect.get(index + 1) == partner else index)
        bench.pairs.append(Pair(stem, partner[1], (index,)))
    for j, (story, stem) in sorted(incorrect.items()):
        if j not in used:
            problems.append(Problem("error", str(directory / stem),
                                    "unpaired item: no matching correct file"))
    if not bench.pairs and not problems:
        problems.append(Problem("error", str(directory), "no StoryCloze audio files"))
    bench.files = {s: audio[s] for p in bench.pairs for s in (p.pos, p.neg)}
    return bench


def _slm21_roots(root: Path):
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    return [c for c in candidates if (c / "lexical").is_dir() or (c / "syntactic").is_dir()]


def _sc_dirs(root: Path):
    """task -> every StoryCloze folder of it in ``root`` or one folder below (sorted)."""
    found = {"ssc": [], "tsc": []}
    for parent in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
        for d in sorted(p for p in parent.iterdir() if p.is_dir()):
            for task, pattern in (("ssc", _SSC_DIR), ("tsc", _TSC_DIR)):
                if pattern.match(d.name):
                    found[task].append(d)
    return {task: dirs for task, dirs in found.items() if dirs}


def _one_folder_per_set(root: Path, benches: list, slm21_roots: list, sc_dirs: dict) -> None:
    """A root holding two folders of one asked set (``sSC/`` and ``spoken_storycloze/``, or
    ``lexical/`` in two subfolders) is an error: only the first in sort order was read, silently."""
    for task in sorted({b.task for b in benches}):
        if task in ("swuggy", "sblimp"):
            folder = "lexical" if task == "swuggy" else "syntactic"
            dirs = [base / folder for base in slm21_roots if (base / folder).is_dir()]
        else:
            dirs = sc_dirs.get(task, [])
        if len(dirs) > 1:
            raise ZeroShotError(f"benchmarks root {root} holds {len(dirs)} {task} folders "
                                f"({', '.join(str(d) for d in dirs)}): which one to score is not "
                                "clear; pass a --benchmarks root that holds one")


def discover(root, tasks=None) -> list:
    """Find and load every benchmark set under ``root`` (optionally only ``tasks``)."""
    root = Path(root)
    if not root.is_dir():
        raise ZeroShotError(f"benchmarks root {root} is not a directory")
    benches = []
    slm21_roots, sc_dirs = _slm21_roots(root), _sc_dirs(root)
    # each sLM21 set wherever it is (BENCH/a/lexical and BENCH/b/syntactic are one layout); two
    # folders of one set stop in _one_folder_per_set
    for folder, task in (("lexical", "swuggy"), ("syntactic", "sblimp")):
        for base in [b for b in slm21_roots if (b / folder).is_dir()][:1]:
            for split in ("dev", "test"):
                if (base / folder / split).is_dir():
                    benches.append(load_slm21(base / folder / split, task, split))
    for task, dirs in sorted(sc_dirs.items()):
        benches.append(load_storycloze(dirs[0], task))
    if tasks:
        benches = _asked(benches, tasks, root)
    _one_folder_per_set(root, benches, slm21_roots, sc_dirs)
    if not benches:
        raise ZeroShotError(f"no benchmark set found under {root} (expected lexical/, syntactic/, "
                            "sSC/ or tSC/; see BENCHMARKS layout in the README)")
    return benches


def _asked(benches: list, tasks, root: Path) -> list:
    """The sets named by ``tasks`` (a task such as ``sblimp`` or a set such as ``sblimp_dev``); a
    name that matches none is an error listing what ``root`` holds."""
    unknown = [t for t in tasks if not any(t in (b.task, b.name) for b in benches)]
    if unknown:
        held = ", ".join(f"{b.name} (task {b.task})" for b in benches) or "no benchmark set"
        raise ZeroShotError(f"tasks {unknown} name no benchmark set under {root}; it holds {held}")
    return [b for b in benches if b.task in tasks or b.name in tasks]


def check_audio_files(bench: Benchmark) -> None:
    """Append a problem for every audio file that cannot be read or holds no signal (empty, NaN or
    Inf samples, shorter than one feature frame, silent: slmjax-eval skips it), and a warning for
    one not 16 kHz mono. Reads every file in full."""
    import soundfile

    from slmjax.units.audio import BadAudio, check_header_length, check_wave
    from slmjax.units.mfcc import WIN  # one 25 ms frame at 16 kHz; HuBERT's receptive field too
    paired = {s for p in bench.pairs for s in (p.pos, p.neg)}
    for stem, path in bench.files.items():
        try:
            with soundfile.SoundFile(str(path)) as f:
                wave, rate, log = f.read(dtype="float32", always_2d=True), f.samplerate, f.extra_info
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported, never raised
            bench.problems.append(Problem("error", str(path), f"unreadable audio ({e})"))
            continue
        try:
            check_header_length(log)
            # the frame in the file's own rate: slmjax-eval resamples to 16 kHz, then checks
            check_wave(wave.mean(axis=1), min_samples=math.ceil(WIN * rate / 16000))
        except BadAudio as e:
            effect = "drops its pair" if stem in paired else "its submission file lacks it"
            bench.problems.append(Problem("error", str(path), f"{e}: slmjax-eval skips the file "
                                          f"and {effect}"))
        if rate != 16000 or wave.shape[1] != 1:
            bench.problems.append(Problem("warning", str(path), f"{rate} Hz, {wave.shape[1]} "
                                          "channel(s): resampled to 16 kHz mono"))


def validate(root, check_audio: bool = True) -> list:
    """Every problem of every benchmark set under ``root`` (an empty list: all is well)."""
    problems = []
    for bench in discover(root):
        if check_audio:
            check_audio_files(bench)
        problems.extend(bench.problems)
        if not bench.pairs and not bench.submission_only and not bench.errors:
            problems.append(Problem("error", str(bench.directory), "no usable pairs"))
    return problems
