"""What a synthesis run's wavs depend on, recorded beside them.

A rerun skips every wav that exists, so that an interrupted run resumes; a rerun into the same
folder with another seed, text file, voice list or set size would instead keep wavs that other
texts or voices produced under the new labels. ``claim`` refuses that with one line.
"""

from __future__ import annotations

import hashlib
import json
import os

from slmjax import fileio
from slmjax.synth.errors import SynthError


def file_digest(path: str) -> str:
    """sha256 of a file's bytes (a text source: its stories decide which file holds which text)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _holds_files(folders: list[str]) -> bool:
    return any(files for folder in folders for _, _, files in os.walk(folder))


def claim(folder: str, name: str, settings: dict, files: list[str]) -> None:
    """Record ``settings`` as ``folder/.slmjax_<name>.json``, or check them against the recorded
    ones: SynthError naming every field that differs, while the ``files`` folders (the audio the
    settings made) hold anything. A folder without a record, or whose audio is gone, is claimed."""
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as they read back
    path = os.path.join(folder, f".slmjax_{name}.json")
    if os.path.exists(path) and _holds_files(files):
        try:
            old = fileio.read_json_object(path)
        except (OSError, ValueError, fileio.NotAJSONObject):
            old = {"unreadable": path}
        diff = [f"{k}: {old.get(k, '<absent>')!r} there vs {settings.get(k, '<absent>')!r} now"
                for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
        if diff:
            raise SynthError(f"{folder} holds {name} audio made with other settings ({'; '.join(diff)}): "
                             f"its wavs would be kept under the new labels; use another --out, or delete "
                             f"{' and '.join(files)}")
        return
    os.makedirs(folder, exist_ok=True)
    fileio.atomic_write_json(path, settings, indent=1)
