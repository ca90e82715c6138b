"""Pronunciations from espeak-ng (``espeak-ng -q -x``), as lists of phone symbols without stress marks."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import subprocess

from slmjax.synth import engines
from slmjax.synth.errors import SynthError


def _call(words: list[str], voice: str) -> list[str]:
    exe = engines.require_engine("espeak")
    proc = subprocess.run([exe, "-q", "-x", "--sep= ", "-v", voice], input="\n".join(words).encode(),
                          capture_output=True)
    if proc.returncode != 0:
        raise SynthError(f"espeak-ng -x failed: {proc.stderr.decode(errors='replace').strip()[-200:]}")
    return [ln for ln in proc.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]


def _batch(chunk: list[str], voice: str) -> list[tuple[str, ...]]:
    lines = _call(chunk, voice)
    if len(lines) != len(chunk):
        lines = [" ".join(_call([w], voice)) for w in chunk]
    return [tuple(p.strip("',=") for p in line.split() if p.strip("',=")) for line in lines]


def phonemize(words: list[str], voice: str = "en-us", batch: int = 2000, jobs: int = 1) -> list[tuple[str, ...]]:
    """Phones of each word (one espeak-ng call per batch, ``jobs`` at a time; per word where a batch
    does not line up)."""
    chunks = [words[start:start + batch] for start in range(0, len(words), batch)]
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        return [ph for phones in pool.map(lambda c: _batch(c, voice), chunks) for ph in phones]


def _folder_digest(folder: str) -> str:
    h = hashlib.sha256()
    for parent, _, files in sorted(os.walk(folder)):
        for path in (os.path.join(parent, name) for name in sorted(files)):
            if os.path.isfile(path):  # not a broken link
                h.update(f"{os.path.relpath(path, folder)}\0".encode())
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def engine_version() -> str:
    """espeak-ng's version line and a digest of its data folder: pronunciations change with either
    (a distribution's data update keeps the version line)."""
    exe = engines.require_engine("espeak")
    line = subprocess.run([exe, "--version"], capture_output=True).stdout.decode(errors="replace").strip()
    data = line.partition("Data at:")[2].strip()
    return f"{line} {_folder_digest(data)}" if os.path.isdir(data) else line
