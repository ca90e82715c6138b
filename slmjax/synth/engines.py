"""TTS engines behind one small interface, and voice specs.

A voice spec is ``ENGINE:VOICE[:sSPEED][:pPITCH]``, e.g. ``espeak:en-us+f3:s165:p60``:
ENGINE is ``espeak``, ``flite`` or ``festival``; VOICE is the engine's own voice name; SPEED is in
words per minute (espeak scale, 175 = normal) and PITCH is 0-99 (50 = the voice's own; festival
ignores it). Every engine
turns (text, voice) into a float32 waveform; :func:`synthesize` resamples it to 16 kHz mono.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from slmjax.synth.errors import SynthError

SAMPLE_RATE = 16000

# Eight espeak-ng voices of different accents, sexes, speeds and pitches (the default set).
DEFAULT_VOICES = (
    "espeak:en-us+m3:s170:p45",
    "espeak:en-us+f3:s165:p62",
    "espeak:en+m1:s160:p40",
    "espeak:en+f2:s172:p66",
    "espeak:en-gb-x-rp+m7:s155:p50",
    "espeak:en-029+f4:s168:p58",
    "espeak:en-gb-scotland+m2:s162:p48",
    "espeak:en-us-nyc+f1:s175:p55",
)

_INSTALL = {
    "espeak": "sudo apt-get install espeak-ng   (macOS: brew install espeak-ng)",
    "flite": "sudo apt-get install flite   (macOS: brew install flite)",
    "festival": "sudo apt-get install festival festvox-kallpc16k",
}


SPEED_RANGE = (80, 450)   # words per minute a voice may have, varied ones included (espeak-ng's range)


@dataclasses.dataclass(frozen=True)
class Voice:
    """One speaker: an engine, its voice name, a speed (wpm) and a pitch (0-99)."""

    engine: str
    name: str
    speed: int = 175
    pitch: int = 50

    @property
    def spec(self) -> str:
        return f"{self.engine}:{self.name}:s{self.speed}:p{self.pitch}"

    def varied(self, rng: np.random.Generator, speed_jitter: float, pitch_jitter: int) -> "Voice":
        """The same voice with speed scaled by up to +-speed_jitter and pitch moved by +-pitch_jitter."""
        speed = int(round(self.speed * (1.0 + rng.uniform(-speed_jitter, speed_jitter))))
        pitch = int(np.clip(self.pitch + rng.integers(-pitch_jitter, pitch_jitter + 1), 0, 99))
        return dataclasses.replace(self, speed=int(np.clip(speed, *SPEED_RANGE)), pitch=pitch)


def parse_voice(spec: str) -> Voice:
    """``ENGINE:VOICE[:sSPEED][:pPITCH]`` -> Voice (a bare VOICE means espeak)."""
    parts = spec.strip().split(":")
    if len(parts) == 1:
        parts = ["espeak"] + parts
    engine, name, rest = parts[0], parts[1], parts[2:]
    if engine not in ENGINES:
        raise SynthError(f"voice {spec!r}: unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    if not name:
        raise SynthError(f"voice {spec!r}: empty voice name")
    given: dict[str, int] = {}
    for field in rest:
        key = field[:1]
        try:
            if key not in ("s", "p"):
                raise ValueError
            value = int(field[1:])
        except ValueError:
            raise SynthError(f"voice {spec!r}: field {field!r} is not sSPEED or pPITCH") from None
        if key in given:
            raise SynthError(f"voice {spec!r}: {'speed' if key == 's' else 'pitch'} given twice")
        given[key] = value
    speed, pitch = given.get("s", 175), given.get("p", 50)
    if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1] or not 0 <= pitch <= 99:
        raise SynthError(f"voice {spec!r}: speed must be in {SPEED_RANGE[0]}..{SPEED_RANGE[1]} "
                         "and pitch in 0..99")
    return Voice(engine, name, speed, pitch)


def parse_voices(specs: str | list[str] | tuple[str, ...] | None) -> list[Voice]:
    """Comma-separated specs (or a list), or a count N meaning the first N default voices."""
    if specs is None or specs == "" or specs == []:
        specs = list(DEFAULT_VOICES[:4])
    if isinstance(specs, str):
        if specs.strip().isdigit():
            n = int(specs)
            if not 1 <= n <= len(DEFAULT_VOICES):
                raise SynthError(f"--voices={n}: a count must be in 1..{len(DEFAULT_VOICES)}")
            specs = list(DEFAULT_VOICES[:n])
        elif not specs.replace(",", "").strip():
            raise SynthError(f"--voices={specs!r}: no voice given")
        else:
            specs = [s for s in specs.split(",") if s.strip()]
    voices = [parse_voice(s) for s in specs]
    if len({v.spec for v in voices}) != len(voices):
        raise SynthError(f"--voices: the same voice is listed twice in {','.join(v.spec for v in voices)}")
    return voices


def require_engine(engine: str) -> str:
    """Path of the engine's program, or one clear error with the install command."""
    program = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}[engine]
    path = shutil.which(program)
    if path is None and engine == "espeak":
        path = shutil.which("espeak")
    if path is None:
        raise SynthError(f"TTS engine {engine!r} not found ({program} is not on PATH); "
                         f"install it with: {_INSTALL[engine]}")
    return path


def _run(cmd: list[str], text: str) -> bytes:
    proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SynthError(f"{os.path.basename(cmd[0])} failed ({proc.returncode}): "
                         f"{err[-1] if err else 'no message'}")
    return proc.stdout


@functools.lru_cache(maxsize=None)
def _espeak_names(exe: str, which: str) -> frozenset[str]:
    """Voice (or variant) names espeak-ng knows: languages, voice names and file names, lower case."""
    out = subprocess.run([exe, f"--voices{which}"], capture_output=True, text=True).stdout.splitlines()[1:]
    names = set()
    for line in out:
        cols = line.split()
        if len(cols) >= 5:
            names.update(c.lower() for c in (cols[1], cols[3], cols[4], cols[4].split("/")[-1]))
    return frozenset(names)


def check_espeak_voice(name: str) -> None:
    """espeak-ng silently falls back to its default voice for an unknown name: refuse it instead."""
    exe = require_engine("espeak")
    base, _, variant = name.partition("+")
    if base.lower() not in _espeak_names(exe, ""):
        raise SynthError(f"espeak-ng has no voice {base!r} (see `espeak-ng --voices`)")
    if variant and variant.lower() not in _espeak_names(exe, "=variant"):
        raise SynthError(f"espeak-ng has no variant {variant!r} (see `espeak-ng --voices=variant`)")


@functools.lru_cache(maxsize=None)
def _festival_names(exe: str) -> frozenset[str]:
    festival = os.path.join(os.path.dirname(exe), "festival")
    try:
        out = subprocess.run([festival, "-b", "(print (voice.list))"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()  # cannot list: let text2wave report the problem
    return frozenset(out.strip().strip("()").split())


@functools.lru_cache(maxsize=None)
def _flite_names(exe: str) -> frozenset[str]:
    out = subprocess.run([exe, "-lv"], capture_output=True, text=True).stdout
    return frozenset(out.partition(":")[2].split())


def check_voice(voice: Voice) -> None:
    """Refuse a voice name the engine does not know (espeak-ng and flite silently fall back to a default)."""
    if voice.engine == "espeak":
        check_espeak_voice(voice.name)
    elif voice.engine == "flite":
        names = _flite_names(require_engine("flite"))
        if voice.name not in names and not os.path.isfile(voice.name):
            raise SynthError(f"flite has no voice {voice.name!r} (known: {' '.join(sorted(names))}, or a .flitevox path)")
    else:
        names = _festival_names(require_engine("festival"))
        if names and voice.name not in names:
            raise SynthError(f"festival has no voice {voice.name!r} (known: {' '.join(sorted(names))})")


def _espeak(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    # espeak-ng reads text inside [[...]] as phoneme codes; one bracket is read as text.
    text = re.sub(r"\[\[+", "[", text)
    out = _run([require_engine("espeak"), "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch),
                "--stdout", "--stdin"], text)
    # espeak streams a 44-byte RIFF header with placeholder sizes, then 16-bit PCM mono.
    if len(out) < 44 or out[:4] != b"RIFF":
        raise SynthError(f"espeak-ng voice {voice.name!r} produced no audio (unknown voice?)")
    sr = int.from_bytes(out[24:28], "little")
    pcm = np.frombuffer(out[44:44 + (len(out) - 44) // 2 * 2], dtype="<i2")
    return pcm.astype(np.float32) / 32768.0, sr


def _via_file(cmd_for: callable, text: str) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory(prefix="slmjax-tts-") as tmp:
        out = os.path.join(tmp, "out.wav")
        _run(cmd_for(out), text)
        data, sr = sf.read(out, dtype="float32", always_2d=True)
    return data.mean(axis=1), sr


def _flite(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    stretch = 175.0 / voice.speed
    f0 = 80.0 + 1.6 * voice.pitch  # 50 -> 160 Hz
    return _via_file(lambda out: [require_engine("flite"), "-voice", voice.name, "--setf",
                                  f"duration_stretch={stretch:.3f}", "--setf", f"int_f0_target_mean={f0:.1f}",
                                  "-f", "/dev/stdin", "-o", out], text)


def _festival(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    stretch = 175.0 / voice.speed
    return _via_file(lambda out: [require_engine("festival"), "-o", out, "-eval", f"(voice_{voice.name})",
                                  "-eval", f"(Parameter.set 'Duration_Stretch {stretch:.3f})"], text)


ENGINES = {"espeak": _espeak, "flite": _flite, "festival": _festival}


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """Speak ``text`` with ``voice``: float32 mono at 16 kHz, leading/trailing silence trimmed."""
    if not text.strip():
        raise SynthError("cannot synthesise an empty text")
    check_voice(voice)
    wave, sr = ENGINES[voice.engine](voice, text)
    if sr != SAMPLE_RATE:
        import soxr  # a librosa dependency; much faster than a polyphase filter at this ratio

        wave = soxr.resample(wave, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
    nz = np.flatnonzero(np.abs(wave) > 1e-3)
    if nz.size == 0:
        raise SynthError(f"{voice.spec} produced silence for {text[:40]!r}")
    pad = SAMPLE_RATE // 20  # keep 50 ms either side
    return np.ascontiguousarray(wave[max(0, nz[0] - pad): nz[-1] + pad + 1])


def encode_wav(wave: np.ndarray) -> bytes:
    """16-bit PCM WAV bytes at 16 kHz."""
    buf = io.BytesIO()
    sf.write(buf, wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buf.getvalue()
