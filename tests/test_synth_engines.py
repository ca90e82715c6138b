"""TTS engines, voice specs and the parallel resumable renderer."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from slmjax.synth import engines, render
from slmjax.synth.errors import SynthError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def test_voice_specs_parse_and_round_trip():
    v = engines.parse_voice("espeak:en-us+f3:s165:p62")
    assert (v.engine, v.name, v.speed, v.pitch) == ("espeak", "en-us+f3", 165, 62)
    assert engines.parse_voice(v.spec) == v
    assert engines.parse_voice("en-gb") == engines.Voice("espeak", "en-gb", 175, 50)
    assert [x.spec for x in engines.parse_voices("3")] == list(engines.DEFAULT_VOICES[:3])
    for bad, msg in (("espek:en", "unknown engine"), ("espeak:en:x9", "sSPEED or pPITCH"),
                     ("espeak:en:p120", "pitch"), ("9", None)):
        with pytest.raises(SynthError, match=msg):
            engines.parse_voices(bad) if bad == "9" else engines.parse_voice(bad)
    with pytest.raises(SynthError, match="twice"):
        engines.parse_voices("espeak:en,espeak:en")


def test_voice_variation_stays_in_range():
    rng = np.random.default_rng(0)
    base = engines.parse_voice("espeak:en:s170:p95")
    vs = [base.varied(rng, 0.1, 8) for _ in range(200)]
    assert all(153 <= v.speed <= 187 and 87 <= v.pitch <= 99 for v in vs)
    assert len({(v.speed, v.pitch) for v in vs}) > 20
    # Voices at the ends of the speed range stay inside it (up to 486 / down to 74 wpm otherwise).
    for spec, lo, hi in (("espeak:en:s450", 414, 450), ("espeak:en:s80", 80, 86)):
        speeds = {engines.parse_voice(spec).varied(rng, 0.08, 8).speed for _ in range(200)}
        assert lo <= min(speeds) and max(speeds) == hi, (spec, sorted(speeds))


@pytest.mark.parametrize("engine,install", [("flite", "apt-get install flite"), ("festival", "apt-get install festival")])
def test_missing_engine_names_the_install_command(monkeypatch, engine, install):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SynthError, match=install) as e:
        engines.synthesize("hello", engines.parse_voice(f"{engine}:kal"))
    assert "\n" not in str(e.value)


@needs_espeak
def test_espeak_output_matches_the_engine_resampled_independently(tmp_path):
    voice = engines.parse_voice("espeak:en-us+m3:s170:p45")
    ours = engines.synthesize("The little fox found a shiny shell.", voice)
    assert ours.dtype == np.float32 and ours.ndim == 1
    # Reference: espeak-ng's own wav file, resampled 22050 -> 16000 with scipy's polyphase filter.
    ref_path = tmp_path / "ref.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+m3", "-s", "170", "-p", "45", "-w", str(ref_path),
                    "The little fox found a shiny shell."], check=True)
    raw, sr = sf.read(ref_path, dtype="float32")
    assert sr == 22050
    ref = signal.resample_poly(raw, 320, 441)
    nz = np.flatnonzero(np.abs(ref) > 1e-3)
    ref = ref[max(0, nz[0] - 800): nz[-1] + 801]
    assert abs(len(ours) - len(ref)) <= 2
    n = min(len(ours), len(ref))
    corr = np.corrcoef(ours[:n], ref[:n])[0, 1]
    assert corr > 0.99, corr


@needs_espeak
def test_double_brackets_are_read_as_text_not_as_phoneme_codes():
    # espeak-ng reads [[...]] as phoneme mnemonics: "[[citation needed]]" (wiki text) came out as
    # the phonemes c-i-t-a-t-i-... instead of the words.
    voice = engines.parse_voice("espeak:en-us:s170:p50")
    words = engines.synthesize("the citation needed end", voice)
    bracketed = engines.synthesize("the [[citation needed]] end", voice)
    # Brackets add pauses; the words must take about as long as spoken without them (the phoneme
    # reading is 30% shorter), never less.
    active = lambda w: int(np.sum(np.abs(w) > 1e-2))
    assert active(bracketed) > 0.9 * active(words), (active(bracketed), active(words))


@needs_espeak
def test_unknown_espeak_voice_is_one_clear_error():
    with pytest.raises(SynthError):
        engines.synthesize("hello", engines.parse_voice("espeak:no-such-voice-xx"))


@needs_espeak
@pytest.mark.parametrize("workers", [1, 2])
def test_renderer_writes_16k_mono_and_resumes(tmp_path, workers):
    voices = engines.parse_voices("2")
    jobs = [render.Job(str(tmp_path / f"d{i % 2}" / f"{i}.wav"), f"Number {i} is here.", voices[i % 2])
            for i in range(6)]
    with render.Renderer(workers) as r:
        d1 = r.render(jobs)
    assert r.synthesised == 6 and r.skipped == 0
    for job, d in zip(jobs, d1):
        info = sf.info(job.path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert d == pytest.approx(info.frames / 16000) and 0.4 < d < 4
    mtimes = [os.stat(j.path).st_mtime_ns for j in jobs]
    with open(jobs[3].path, "wb") as f:
        f.write(b"RIFF garbage")  # an unreadable file is synthesised again
    with render.Renderer(workers) as r:
        d2 = r.render(jobs)
    assert (r.synthesised, r.skipped) == (1, 5)
    assert d2 == pytest.approx(d1)
    assert [os.stat(j.path).st_mtime_ns for i, j in enumerate(jobs) if i != 3] == mtimes[:3] + mtimes[4:]
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def _median_f0(wave, sr=16000):
    """Median pitch (Hz) of the loud frames by autocorrelation: a plain NumPy reference."""
    frame, hop = 1024, 256
    f0s = []
    energy_floor = 0.3 * np.sqrt(np.mean(wave**2))
    for start in range(0, len(wave) - frame, hop):
        x = wave[start:start + frame] * np.hanning(frame)
        if np.sqrt(np.mean(x**2)) < energy_floor:
            continue
        ac = np.correlate(x, x, "full")[frame - 1:]
        lo, hi = sr // 400, sr // 60
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            f0s.append(sr / lag)
    return float(np.median(f0s))


ENGINES_HERE = [e for e, exe in (("espeak", "espeak-ng"), ("flite", "flite")) if shutil.which(exe)]


@pytest.mark.parametrize("engine", ENGINES_HERE)
def test_speed_and_pitch_change_the_audio(engine):
    name = {"espeak": "en-us", "flite": "kal16"}[engine]
    text = "The brave little bear walked all the way home through the green forest."
    slow = engines.synthesize(text, engines.parse_voice(f"{engine}:{name}:s120:p50"))
    fast = engines.synthesize(text, engines.parse_voice(f"{engine}:{name}:s240:p50"))
    assert len(slow) / len(fast) > 1.5
    low = _median_f0(engines.synthesize(text, engines.parse_voice(f"{engine}:{name}:s175:p15")))
    high = _median_f0(engines.synthesize(text, engines.parse_voice(f"{engine}:{name}:s175:p85")))
    assert high > 1.2 * low, (low, high)


@pytest.mark.parametrize("engine,program,voice", [("flite", "flite", "slt"), ("festival", "text2wave", "kal_diphone")])
def test_other_engines_check_voices_and_render_at_16k(tmp_path, engine, program, voice):
    if shutil.which(program) is None:
        pytest.skip(f"{engine} not installed")
    with pytest.raises(SynthError, match=f"{engine} has no voice 'nosuch'"):
        engines.synthesize("hello", engines.parse_voice(f"{engine}:nosuch"))
    jobs = [render.Job(str(tmp_path / f"{s}.wav"), "Hello there, little fox.", engines.parse_voice(f"{engine}:{voice}:s{s}"))
            for s in (130, 260)]
    with render.Renderer(1) as r:
        slow, fast = r.render(jobs)
    assert sf.info(jobs[0].path).samplerate == 16000 and 0.5 < fast < slow < 5 and slow / fast > 1.4
