"""What the benchmark writers share: opaque stems, gold.csv files, rendering one set."""

from __future__ import annotations

import csv
import io
import os
import random
import string

from slmjax.synth import engines
from slmjax.fileio import atomic_write_text, remove_stale_temps
from slmjax.synth.errors import SynthError
from slmjax.synth.render import Job, Renderer

LEXICAL_COLUMNS = ("filename", "id", "voice", "frequency", "word", "phones", "length", "correct")
SYNTACTIC_COLUMNS = ("filename", "type", "subtype", "id", "voice", "transcription", "correct")
_ALPHABET = string.ascii_letters + string.digits
SPLITS = ("dev", "test")  # the order the items are drawn in: test after dev, whichever a run writes


def check_splits(splits) -> tuple[str, ...]:
    """The splits asked for, in drawing order; SynthError for none or an unknown one."""
    if not splits or set(splits) - set(SPLITS):
        raise SynthError(f"--splits={','.join(splits)}: choose from dev,test")
    return tuple(s for s in SPLITS if s in splits)


def split_settings(splits) -> dict:
    """The settings fields of a split choice. Test items drawn without dev were once dev's items:
    such a folder's audio must not be reused as the test items drawn after dev."""
    splits = check_splits(splits)
    return {"splits": list(splits), **({"test_drawn_after_dev": True} if "dev" not in splits else {})}


class Stems:
    """Opaque random wav stems (10 letters/digits), unique within a benchmark, fixed by the seed."""

    def __init__(self, seed: int, name: str):
        self._rng = random.Random(f"stems:{name}:{seed}")
        self._seen: set[str] = set()

    def __call__(self) -> str:
        while True:
            stem = "".join(self._rng.choice(_ALPHABET) for _ in range(10))
            if stem not in self._seen:
                self._seen.add(stem)
                return stem


def write_csv(path: str, columns: tuple[str, ...], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    remove_stale_temps(os.path.dirname(path))
    atomic_write_text(path, buf.getvalue())


def render_rows(folder: str, rows: list[dict], texts: list[str], voices: list[engines.Voice],
                workers: int | None, desc: str) -> None:
    """Synthesise ``texts[i]`` into ``folder/<rows[i]['filename']>.wav`` with the row's voice."""
    by_spec = {v.spec: v for v in voices}
    jobs = [Job(os.path.join(folder, r["filename"] + ".wav"), t, by_spec[r["voice"]]) for r, t in zip(rows, texts)]
    os.makedirs(folder, exist_ok=True)
    with Renderer(workers, desc=desc) as r:
        r.render(jobs)
