"""Texts to speak: the built-in story generator, or a user's file (plain text or JSONL)."""

from __future__ import annotations

import json
import os
import re
from typing import Iterator

from slmjax.synth import stories
from slmjax.synth.errors import SynthError

ENDOFTEXT = "<|endoftext|>"
_BLANK_LINE = re.compile(r"\n\s*\n")  # a line that is empty or holds only whitespace
# espeak-ng stops reading at a NUL; a lone surrogate (JSON's "\ud83d" of a cut emoji) is no character:
# it cannot be encoded for the engine nor written to the manifest
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _clean(text: str) -> str:
    """Control characters and lone surrogates become spaces; runs of whitespace one space."""
    return " ".join(_CONTROL.sub(" ", text).split())


def from_generator(seed: int) -> Iterator[dict]:
    """Endless built-in stories: dicts with id, text and topic."""
    i = 0
    while True:
        s = stories.story(seed, i)
        yield {"id": f"story-{seed}-{i:08d}", "text": s.text, "topic": s.topic}
        i += 1


def from_file(path: str) -> Iterator[dict]:
    """Texts of a file: JSONL (a ``text`` or ``story`` field, optional ``id``), a JSON array of such objects
    (TinyStories' .json shards), or plain text in which stories are separated by ``<|endoftext|>``
    (TinyStories' .txt files) or by blank lines."""
    if not os.path.isfile(path):
        raise SynthError(f"--text: {path} does not exist")
    try:
        yield from _records(path)
    except UnicodeDecodeError as e:
        raise SynthError(f"{path}: not UTF-8 text ({e.reason}); convert it, e.g. with iconv -t UTF-8") from None


def _record(rec: dict, default_id: str, text: str) -> Iterator[dict]:
    """The record's text, cleaned, with its id (``default_id`` where it has none, or a null one);
    nothing for a text that is only whitespace."""
    text, rid = _clean(text), rec.get("id")
    if text:
        yield {"id": default_id if rid is None else str(rid), "text": text}


def _open(path: str):
    return open(path, encoding="utf-8-sig")  # a byte order mark (Windows editors) is not text


def _first_line_is_json(path: str) -> bool:
    with _open(path) as f:
        first = next((line for line in f if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def _records(path: str) -> Iterator[dict]:
    stem = os.path.splitext(os.path.basename(path))[0]
    with _open(path) as f:
        head = f.read(4096)
    # a file not named .json/.jsonl is JSON only when it parses: plain text may open with "[" or "{"
    named_json = path.endswith((".jsonl", ".json"))
    records = None
    if head.lstrip().startswith("["):
        try:
            with _open(path) as f:
                records = json.load(f)
        except json.JSONDecodeError as e:
            if named_json:
                raise SynthError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if records is not None:
        for n, rec in enumerate(records):
            text = rec.get("text", rec.get("story")) if isinstance(rec, dict) else None
            if not isinstance(text, str):
                raise SynthError(f"{path}: item {n} has no 'text' (or 'story') string field")
            yield from _record(rec, f"{stem}-{n:08d}", text)
        return
    if named_json or (head.lstrip().startswith("{") and _first_line_is_json(path)):
        with _open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    text = rec.get("text", rec.get("story"))
                except (json.JSONDecodeError, AttributeError):
                    raise SynthError(f"{path}:{n}: not a JSON object") from None
                if not isinstance(text, str):
                    raise SynthError(f"{path}:{n}: no 'text' (or 'story') string field")
                yield from _record(rec, f"{stem}-{n:08d}", text)
        return
    with _open(path) as f:
        body = f.read()
    chunks = body.split(ENDOFTEXT) if ENDOFTEXT in body else _BLANK_LINE.split(body)
    n = 0
    for chunk in chunks:
        text = _clean(chunk)
        if text:
            yield {"id": f"{stem}-{n:08d}", "text": text}
            n += 1
