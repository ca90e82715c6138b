"""Synthesising many files in parallel processes: resumable, atomic, with a progress bar."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from typing import Iterable, Sequence

import soundfile as sf
from tqdm import tqdm

from slmjax.fileio import atomic_write_bytes, remove_stale_temps
from slmjax.synth import engines
from slmjax.synth.errors import SynthError


@dataclasses.dataclass(frozen=True)
class Job:
    """One file to write: ``path`` (absolute) gets ``text`` spoken by ``voice``."""

    path: str
    text: str
    voice: engines.Voice


def existing_duration(path: str) -> float | None:
    """Seconds of a finished wav at ``path``, or None when it is missing or unreadable."""
    try:
        info = sf.info(path)
    except (RuntimeError, OSError, sf.LibsndfileError):
        return None
    if info.samplerate != engines.SAMPLE_RATE or info.channels != 1 or info.frames == 0:
        return None
    return info.frames / info.samplerate


def _render_one(job: Job) -> tuple[str, float | str, bool]:
    """(path, seconds, synthesised now); seconds is the error message when the engine failed."""
    done = existing_duration(job.path)
    if done is not None:
        return job.path, done, False
    try:
        wave = engines.synthesize(job.text, job.voice)
    except SynthError as e:
        return job.path, str(e), False
    os.makedirs(os.path.dirname(job.path), exist_ok=True)
    atomic_write_bytes(job.path, engines.encode_wav(wave))
    return job.path, len(wave) / engines.SAMPLE_RATE, True


def worker_count(workers: int | None) -> int:
    """``workers`` processes, or one per CPU core when None; SynthError below 1."""
    if workers is not None and workers < 1:
        raise SynthError(f"--workers={workers}: must be >= 1 (omit it for one per CPU core)")
    return workers or os.cpu_count() or 1


def check_engines(voices: Iterable[engines.Voice]) -> None:
    """Fail early, with the install command, when a voice's engine is missing."""
    voices = list(voices)
    for engine in sorted({v.engine for v in voices}):
        engines.require_engine(engine)
    for voice in {(v.engine, v.name): v for v in voices}.values():
        engines.check_voice(voice)


class Renderer:
    """A pool of worker processes that render Jobs; use as a context manager.

    ``render(jobs)`` returns the duration in seconds of every job's wav, in order; files that
    already exist are not synthesised again (a rerun resumes). A text the engine cannot speak stops the
    run with its message, or, with ``render(jobs, allow_failures=True)``, gets None and its message in
    ``self.failures`` (path -> reason).
    """

    def __init__(self, workers: int | None = None, desc: str = "synth"):
        self.workers = worker_count(workers)
        self.desc = desc
        self._pool = None
        self.skipped = 0
        self.seconds = 0.0
        self.seconds_synthesised = 0.0
        self.made: set[str] = set()  # paths synthesised (not found) by this renderer
        self.failures: dict[str, str] = {}

    @property
    def synthesised(self) -> int:
        """Files this renderer synthesised (not found already there)."""
        return len(self.made)

    def __enter__(self) -> "Renderer":
        if self.workers > 1:
            self._pool = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn").Pool(self.workers)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.terminate() if exc[0] is not None else self._pool.close()
            self._pool.join()
            self._pool = None

    def render(self, jobs: Sequence[Job], bar: tqdm | None = None, allow_failures: bool = False) -> list[float | None]:
        check_engines(j.voice for j in jobs)
        own_bar = bar is None
        if own_bar:
            bar = tqdm(total=len(jobs), desc=self.desc, unit="file", dynamic_ncols=True)
        index = {job.path: i for i, job in enumerate(jobs)}
        if len(index) != len(jobs):
            raise SynthError(f"{self.desc}: two jobs write the same file")
        # a run killed while a wav was being written left its temporary file: nothing reads it, remove it
        for folder in sorted({os.path.dirname(j.path) for j in jobs}):
            remove_stale_temps(folder)
        durations = [0.0] * len(jobs)
        results = (self._pool.imap_unordered(_render_one, jobs, chunksize=4) if self._pool
                   else map(_render_one, jobs))
        try:
            for path, seconds, made in results:
                if isinstance(seconds, str):
                    if not allow_failures:
                        raise SynthError(f"{path}: {seconds}")
                    self.failures[path] = seconds
                    durations[index[path]] = None
                    bar.update(1 if own_bar else 0)
                    continue
                durations[index[path]] = seconds
                if made:
                    self.made.add(path)
                self.skipped += not made
                self.seconds += seconds
                self.seconds_synthesised += seconds if made else 0.0
                bar.update(1 if own_bar else seconds)
                bar.set_postfix(audio_h=f"{self.seconds / 3600:.2f}", skipped=self.skipped, refresh=False)
        finally:
            if own_bar:
                bar.close()
        return durations
