"""Benchmark texts must never occur in a training corpus: text hashes, recorded and checked.

Benchmark commands write ``<root>/exclude/<set>.txt`` (one ``<sha1> <kind>`` per line): ``sentence``
hashes for sBLIMP sentences (grammatical and not), ``context`` hashes for the four context sentences of
each StoryCloze story. :func:`load` also hashes the transcriptions of any ``syntactic/*/gold.csv`` it
finds, so official sBLIMP roots are excluded too. A corpus text leaks when one of its sentences (or the
whole text) is a benchmark sentence, or any four consecutive sentences are a benchmark context.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import os
import re

from slmjax.synth.errors import SynthError

CONTEXT_SENTENCES = 4
# A sentence ends at . ! or ?, possibly inside a closing quote or bracket (dialogue: `"Look!" she said.`).
_SENT = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)\]]))\s+")
# A quoted sentence after a speech tag (`Mom said, "The dog sleeps."`): the quote's sentences count too.
# (overlapping matches: an apostrophe before the opening quote, as in "Tom's mom said, 'Hi.'", may open one)
# A quoted sentence may end in a comma before its speech tag (`"The dog sleeps," said Mom.`).
_QUOTED = re.compile(r"(?=[\"'\u201c\u2018]([^\"\u201c\u201d\u2018\u2019]{1,500}?[.!?,])[\"'\u201d\u2019])")
# Finer clause breaks, for the sentence check only: after ; or :, and a sentence end with no space
# after it (`tired.The`). A benchmark sentence holds none of them, so splitting there loses none.
_CLAUSE = re.compile(r"(?<=[;:])\s+|(?<=[.!?])(?=[A-Z\u201c\"])")
# Words keep inner apostrophes (didn't); quote marks around them are punctuation.
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def normalize(text: str) -> str:
    """Lower case, punctuation dropped, single spaces: two texts match when these are equal."""
    return " ".join(_WORD.findall(text.lower().replace("\u2019", "'")))


def text_hash(text: str) -> str:
    return hashlib.sha1(normalize(text).encode("utf-8")).hexdigest()


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENT.split(text.strip()) if s]


@dataclasses.dataclass
class Exclusions:
    """Hashes a corpus must avoid."""

    sentence: set[str] = dataclasses.field(default_factory=set)
    context: set[str] = dataclasses.field(default_factory=set)

    def __len__(self) -> int:
        return len(self.sentence) + len(self.context)

    def digest(self) -> str:
        """sha256 of the hashes held (which texts a corpus drops, hence which file holds which)."""
        h = hashlib.sha256()
        for kind, hashes in (("sentence", self.sentence), ("context", self.context)):
            h.update(f"{kind}:{','.join(sorted(hashes))};".encode())
        return h.hexdigest()

    def leaks(self, text: str) -> bool:
        """True when ``text`` contains a benchmark sentence or a benchmark story context."""
        sents = split_sentences(text)
        quoted = [q for m in _QUOTED.finditer(text) for q in split_sentences(m.group(1))]
        clauses = [c for s in sents + quoted for c in _CLAUSE.split(s) if c]
        if text_hash(text) in self.sentence or any(text_hash(s) in self.sentence for s in sents + quoted + clauses):
            return True
        k = CONTEXT_SENTENCES
        return any(text_hash(" ".join(sents[i:i + k])) in self.context for i in range(len(sents) - k + 1))


def write(root: str, name: str, sentences=(), contexts=()) -> str:
    """Record a benchmark set's texts under ``<root>/exclude/<name>.txt`` (atomically)."""
    from slmjax.fileio import atomic_write_text

    lines = sorted({f"{text_hash(s)} sentence" for s in sentences} | {f"{text_hash(c)} context" for c in contexts})
    path = os.path.join(root, "exclude", f"{name}.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def load(roots: list[str]) -> Exclusions:
    """Hashes from every benchmark root given (exclude/*.txt and syntactic/*/gold.csv)."""
    ex = Exclusions()
    for root in roots:
        if not os.path.isdir(root):
            raise SynthError(f"--exclude: {root} is not a folder")
        files = sorted(glob.glob(os.path.join(root, "exclude", "*.txt")))
        golds = sorted(glob.glob(os.path.join(root, "syntactic", "*", "gold.csv")))
        if not files and not golds:
            raise SynthError(f"--exclude: {root} holds neither exclude/*.txt nor syntactic/*/gold.csv")
        for path in files:
            with open(path) as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    h, _, kind = line.strip().partition(" ")
                    if kind not in ("sentence", "context") or len(h) != 40:
                        raise SynthError(f"{path}:{n}: expected '<sha1> sentence|context'")
                    getattr(ex, kind).add(h)
        for path in golds:
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    if row.get("transcription"):
                        ex.sentence.add(text_hash(row["transcription"]))
    return ex
