"""Builders of tiny benchmark sets in the official layouts, shared by the zero-shot tests."""

import csv
import random
from pathlib import Path

import numpy as np
import soundfile

K = 20  # units of the fake tokenizer
# samples that spell one unit: a 25 ms feature frame at 16 kHz, the fewest a real tokenizer encodes
# (so slmjax-eval --validate finds no file too short)
SAMPLES_PER_UNIT = 400


def write_units_wav(path: Path, units) -> None:
    """A wav whose samples spell ``units`` (one frame of samples per unit) for :class:`FakeTokenizer`."""
    samples = np.repeat((np.asarray(units, np.float32) + 0.5) / K * 0.9, SAMPLES_PER_UNIT)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, 16000, subtype="FLOAT")


class FakeTokenizer:
    """Reads back the units written by :func:`write_units_wav` (vocab K + EOS + PAD)."""
    vocab_size, eos_id, pad_id = K + 2, K, K + 1

    def __init__(self, tag="fake"):
        self.identity = {"kind": tag, "k": K, "centroids_sha256": "0" * 8, "coarse": None}
        self.calls = 0

    def encode_file(self, path):
        self.calls += 1
        x, _ = soundfile.read(str(path), dtype="float32")
        return np.floor(x[::SAMPLES_PER_UNIT] / 0.9 * K).astype(np.int32)


def write_gold(path: Path, columns, rows, shuffle_seed=None):
    rows = list(rows)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)


LEX_COLS = ["filename", "id", "voice", "frequency", "word", "phones", "length", "correct"]
SYN_COLS = ["filename", "type", "subtype", "id", "voice", "transcription", "correct"]


def make_lexical(split_dir: Path, items, shuffle_seed=None, units_of=None):
    """items: (id, frequency, voice) -> a word/non-word pair; stems are opaque."""
    rows, n = [], 0
    for item_id, freq, voice in items:
        for correct in (1, 0):
            stem = f"f{n:04d}"
            n += 1
            rows.append([stem, item_id, voice, freq if correct else "", f"w{item_id}" if correct
                         else "", "a b", 2, correct])
            write_units_wav(split_dir / f"{stem}.wav",
                            units_of(item_id, voice, correct) if units_of else [1, 2, 3])
    write_gold(split_dir / "gold.csv", LEX_COLS, rows, shuffle_seed)
    return rows


def make_syntactic(split_dir: Path, items, shuffle_seed=None, units_of=None):
    """items: (type, subtype, id, voice) -> a grammatical/ungrammatical pair."""
    rows, n = [], 0
    for typ, sub, item_id, voice in items:
        for correct in (1, 0):
            stem = f"s{n:04d}"
            n += 1
            rows.append([stem, typ, sub, item_id, voice, "a sentence", correct])
            key = (typ, sub, item_id)
            write_units_wav(split_dir / f"{stem}.wav",
                            units_of(key, voice, correct) if units_of else [1, 2, 3])
    write_gold(split_dir / "gold.csv", SYN_COLS, rows, shuffle_seed)
    return rows


def make_storycloze(folder: Path, n_pairs, units_of=None):
    for i in range(n_pairs):
        for j, tag in enumerate(("correct", "incorrect")):
            write_units_wav(folder / f"{2 * i + j}_story{i:03d}_{tag}.wav",
                            units_of(i, j == 0) if units_of else [1, 2, 3])
