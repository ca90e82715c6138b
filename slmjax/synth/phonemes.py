"""Pronunciations from espeak-ng (``espeak-ng -q -x``), as lists of phone symbols without stress marks."""

from __future__ import annotations

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


def phonemize(words: list[str], voice: str = "en-us", batch: int = 2000) -> list[tuple[str, ...]]:
    """Phones of each word (one espeak-ng call per batch; per word where a batch does not line up)."""
    out: list[tuple[str, ...]] = []
    for start in range(0, len(words), batch):
        chunk = words[start:start + batch]
        lines = _call(chunk, voice)
        if len(lines) != len(chunk):
            lines = [" ".join(_call([w], voice)) for w in chunk]
        for line in lines:
            out.append(tuple(p.strip("',=") for p in line.split() if p.strip("',=")))
    return out
