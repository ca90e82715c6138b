"""Audio loading and the checks that decide whether an input is encodable."""

from __future__ import annotations

import warnings

import numpy as np

from slmjax.units.errors import UnitsError

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


class BadAudio(Exception):
    """An input that cannot be encoded; ``str(exc)`` is the reason written to skipped.jsonl."""


def load_wave(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 wave at ``sample_rate``; raises BadAudio("unreadable: ...") on failure."""
    import soundfile as sf

    try:
        wave, sr = sf.read(path, dtype="float32", always_2d=True)
        wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    except Exception:  # formats soundfile lacks (e.g. some mp3): librosa's fallbacks
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wave, sr = librosa.load(path, sr=None, mono=True)
        except Exception as exc:  # noqa: BLE001 - any decoder failure means unreadable
            raise BadAudio(f"unreadable: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    return resample(np.asarray(wave, np.float32), int(sr), sample_rate)


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
    if arr.dtype.kind == "i":
        arr = arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max + 1)
    return arr.astype(np.float32, copy=False)
