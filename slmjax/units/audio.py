"""Audio loading and the checks that decide whether an input is encodable."""

from __future__ import annotations

import json
import os
import re
import warnings

import numpy as np

from slmjax import fileio
from slmjax.errortext import describe
from slmjax.units.errors import UnitsError

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


class BadAudio(Exception):
    """An input that cannot be encoded; ``str(exc)`` is the reason written to skipped.jsonl."""


def load_wave(path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 wave at ``sample_rate`` of a file (a path, or a binary file object holding an
    encoded file); raises BadAudio("unreadable: ...") on failure."""
    import soundfile as sf

    try:  # as bytes: soundfile cannot encode a str path holding a non-UTF-8 name
        with sf.SoundFile(path if hasattr(path, "read") else os.fsencode(path)) as f:
            wave, sr = f.read(dtype="float32", always_2d=True), f.samplerate
            check_header_length(f.extra_info)
        wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    except BadAudio:
        raise
    except Exception as sf_exc:  # formats soundfile lacks (e.g. some mp3): librosa's fallbacks
        sf_why = getattr(sf_exc, "error_string", None) or describe(sf_exc)
        if hasattr(path, "read"):  # the fallbacks beyond soundfile read only paths
            raise BadAudio(f"unreadable: {sf_why}") from None
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wave, sr = librosa.load(path, sr=None, mono=True)
        except Exception as exc:  # noqa: BLE001 - any decoder failure means unreadable
            raise BadAudio(f"unreadable: {_why_unreadable(exc)}; soundfile: {sf_why}") from None
    return resample(np.asarray(wave, np.float32), int(sr), sample_rate)


# libsndfile's log of a WAV whose data chunk is shorter than its header declares (a file cut off):
# "data : 64000 (should be 31978)". It reads what is there without an error.
_CUT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Sizes that writers streaming to a pipe put in the header, not knowing the length (0, 0xffffffff,
# or sox's 0x7ffff000 rounded down to the block size): such a file is whole.
_STREAMED = 0x7FFF0000


def check_header_length(log: str) -> None:
    """BadAudio when libsndfile's header log shows a WAV cut short of its declared data."""
    m = _CUT_DATA.search(log or "")
    if m:
        declared, held = int(m.group(1)), int(m.group(2))
        if 0 < declared < _STREAMED and held < declared:
            raise BadAudio(f"truncated: the header declares {declared} bytes of audio, the file "
                           f"holds {held}")


def _why_unreadable(exc: Exception) -> str:
    """What librosa's last-resort decoders (audioread) failing with ``exc`` means."""
    if isinstance(exc, EOFError):
        return "empty or truncated file"
    if type(exc).__name__ == "NoBackendError":
        return "no decoder could read it (format?)"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    return describe(exc)


def resample(wave: np.ndarray, sr: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample with librosa (soxr) when rates differ."""
    if sr == target:
        return np.ascontiguousarray(wave, np.float32)
    import librosa

    if not np.all(np.isfinite(wave)):
        return wave  # left for check_wave to reject; resampling NaNs would spread them
    return librosa.resample(wave, orig_sr=sr, target_sr=target, res_type="soxr_hq").astype(np.float32)


def check_wave(wave: np.ndarray, min_samples: int, silence_peak: float = 1e-4) -> None:
    """Raise BadAudio with the reason when the wave is empty, non-finite, silent or too short."""
    if wave.size == 0:
        raise BadAudio("empty: no samples")
    if not np.all(np.isfinite(wave)):
        raise BadAudio("non-finite: NaN or Inf samples")
    if wave.size < min_samples:
        raise BadAudio(f"too short: {wave.size} samples < {min_samples}")
    if float(np.max(np.abs(wave))) < silence_peak:
        raise BadAudio(f"silent: peak amplitude below {silence_peak:g}")


def as_wave(wave) -> np.ndarray:
    """Validate an in-memory wave given to the tokenizer (1-D float, 16 kHz)."""
    arr = np.asarray(wave)
    if arr.ndim != 1:
        raise UnitsError(f"expected a 1-D mono wave, got shape {arr.shape}")
    return pcm_to_float(arr)


def pcm_to_float(arr: np.ndarray) -> np.ndarray:
    """Integer PCM to float32 in [-1, 1): signed centred on 0, unsigned (8-bit WAV) on its midpoint;
    float samples unchanged.

    int64 is no sample width but a container: TFDS ``Audio`` stores the decoder's samples (16-bit
    values for 16-bit files: LibriSpeech... TED-LIUM) as int64 by default, as does ``np.array`` of
    Python ints. Its samples are read as 16-bit PCM, or 24 or 32-bit when larger values need it."""
    if arr.dtype.kind not in "iu":
        return arr.astype(np.float32, copy=False)
    half = 2.0 ** (8 * arr.dtype.itemsize - 1)
    if arr.dtype == np.int64:
        peak = int(np.abs(arr).max()) if arr.size else 0
        half = next((2.0 ** (bits - 1) for bits in (16, 24, 32) if peak <= 2 ** (bits - 1)), half)
    return ((arr.astype(np.float64) - (half if arr.dtype.kind == "u" else 0.0)) / half).astype(np.float32)


def skip_row(utt, exc: Exception) -> dict:
    """The skipped.jsonl row of an input ``utt`` that failed with ``exc`` (BadAudio: its reason)."""
    reason = str(exc) if isinstance(exc, BadAudio) else f"failed: {describe(exc)}"
    return {"source": utt.source, "id": utt.uid, "reason": reason}


def write_skipped(path: str, rows: list[dict]) -> None:
    """Write skipped.jsonl: one JSON row per skipped input."""
    fileio.atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def nothing_usable(what: str, rows: list[dict], path: str) -> UnitsError:
    """The error when every input tried was skipped: ``what`` failed, the reasons, where they are listed."""
    reasons = sorted({r["reason"].split(":")[0] for r in rows})
    return UnitsError(f"nothing could be {what}: all {len(rows)} inputs were skipped ({', '.join(reasons)}); see {path}")
