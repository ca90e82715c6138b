"""Kill and rerun, outside training: a process SIGKILLed half-way through a write leaves at most its
temporary file, which no later reader takes for data, and the rerun ends where an uninterrupted run
would. Each default test kills a real child process at a chosen point (deterministic); the slow ones
SIGKILL the command lines at seeded random moments and compare with an uninterrupted run."""

import glob
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def _child(code: str, **kw) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python; it is expected to SIGKILL itself."""
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120, **kw)


def _temps(root) -> list:
    return [p for p in glob.glob(os.path.join(str(root), "**", ".*"), recursive=True) if ".tmp" in p]


def _wav(path, seconds=0.5, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, wave.astype(np.float32), 16000, subtype="PCM_16")


# the child writes a wav through the atomic writer and is SIGKILLed after half of its bytes
_KILLED_WAV_WRITE = """
    import os, signal, sys
    from slmjax import fileio
    data = open(sys.argv[1], 'rb').read()
    tmp = fileio._tmp_name(sys.argv[2])
    with open(tmp, 'xb') as f:
        f.write(data[:len(data) // 2]); f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def _kill_during_write(src: str, dst: str):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILLED_WAV_WRITE), src, dst],
                         capture_output=True, env={**os.environ, "PYTHONPATH": REPO}, cwd=REPO, timeout=120)
    assert res.returncode == -signal.SIGKILL
    left = _temps(os.path.dirname(dst))
    assert len(left) == 1 and not os.path.exists(dst)
    return left[0]


def test_units_folder_source_never_reads_a_killed_write(tmp_path):
    """A folder source lists hidden files no more: the truncated temporary wav of a killed writer
    (synth, a copy) was encoded as an utterance of the dataset."""
    from slmjax.units.sources import list_utterances

    src = tmp_path / "src"
    for i in range(2):
        _wav(str(src / f"{i:08d}.wav"), seed=i)
    _wav(str(tmp_path / "full.wav"), seconds=2.0, seed=5)
    _kill_during_write(str(tmp_path / "full.wav"), str(src / "00000002.wav"))
    os.makedirs(src / ".cache")
    _wav(str(src / ".cache" / "x.wav"))
    utts = list_utterances(str(src))
    assert [u.uid for u in utts] == ["00000000", "00000001"]


def test_zeroshot_benchmark_never_reads_a_killed_write(tmp_path):
    """A StoryCloze folder with the temporary wav of a killed `slmjax-synth bench` was refused
    ('file name is not <index>_<story>_correct|incorrect'); an sLM21 folder warned about it."""
    from slmjax.analysis.zeroshot import benchmarks as bm

    d = tmp_path / "sSC"
    for i, (story, kind) in enumerate([("aa", "correct"), ("aa", "incorrect"), ("bb", "correct"),
                                       ("bb", "incorrect")]):
        _wav(str(d / f"{i}_{story}_{kind}.wav"), seed=i)
    _kill_during_write(str(d / "0_aa_correct.wav"), str(d / "4_cc_correct.wav"))
    bench = bm.load_storycloze(d, "ssc")
    assert not bench.problems, bench.problems
    assert len(bench.pairs) == 2 and all(not s.startswith(".") for s in bench.files)


@needs_espeak
def test_synth_rerun_removes_the_temporary_wav_of_a_killed_run(tmp_path):
    """`slmjax-synth` SIGKILLed while a wav was written left `.NAME.wav.PID.HEX.tmp.wav` for good."""
    from slmjax.synth import engines
    from slmjax.synth.render import Job, Renderer

    voice = engines.parse_voices("1")[0]
    out = tmp_path / "wavs"
    jobs = [Job(str(out / f"{i:08d}.wav"), f"Sentence number {i}.", voice) for i in range(3)]
    _wav(str(tmp_path / "full.wav"), seconds=1.0)
    _kill_during_write(str(tmp_path / "full.wav"), jobs[1].path)
    with Renderer(1) as r:
        durations = r.render(jobs)
    assert all(d > 0 for d in durations) and r.synthesised == 3
    assert _temps(out) == []
    assert sorted(os.listdir(out)) == [f"{i:08d}.wav" for i in range(3)]


def test_remove_stale_temps_keeps_live_writers_and_other_files(tmp_path):
    from slmjax import fileio

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = tmp_path / f".a.wav.{os.getpid()}.0123abcd.tmp.wav"
    stale = tmp_path / f".a.wav.{dead.pid}.0123abcd.tmp.wav"
    stale_json = tmp_path / f".manifest.json.{dead.pid}.89abcdef.tmp.json"
    other = [tmp_path / ".hidden.wav", tmp_path / "a.wav", tmp_path / f".a.wav.{dead.pid}.xyz.tmp.wav"]
    for p in [live, stale, stale_json, *other]:
        p.write_bytes(b"x")
    removed = fileio.remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted([str(stale), str(stale_json)])
    assert live.exists() and all(p.exists() for p in other)
    assert fileio._TMP_RE.match(os.path.basename(fileio._tmp_name(str(tmp_path / "x.wav"))))
    assert fileio.remove_stale_temps(tmp_path / "missing") == []


# the child encodes 6 files; the tokenizer SIGKILLs the process when asked for the fifth one
_KILLED_CACHE_BUILD = """
    import json, os, signal, sys, types
    import numpy as np
    from slmjax.analysis.zeroshot import units_cache as uc
    uc.WRITE_EVERY_SECONDS = 0.0
    root, cache, log = sys.argv[1:4]
    files = {f"{i}_s_correct": os.path.join(root, f"{i}_s_correct.wav") for i in range(6)}
    bench = types.SimpleNamespace(name="ssc", directory=root, files=files)
    class Tok:
        identity = {"kind": "fake"}
        n = 0
        def encode_file(self, path):
            Tok.n += 1
            if Tok.n == 5 and os.environ.get("KILL_AT_5"):
                os.kill(os.getpid(), signal.SIGKILL)
            with open(log, "a") as f:
                f.write(os.path.basename(path) + "\\n")
            return np.arange(int(os.path.basename(path)[0]) + 2, dtype=np.int32)
    units, skipped = uc.encode_benchmark(bench, Tok(), cache, progress=False)
    print(json.dumps({s: u.tolist() for s, u in sorted(units.items())}))
"""


def test_units_cache_build_resumes_after_a_kill(tmp_path):
    """slmjax-eval killed while encoding a benchmark re-encoded it from its first file: the cache was
    written once, at the end. It is now rewritten (atomically) as it grows; never read half-written."""
    root = tmp_path / "bench"
    for i in range(6):
        _wav(str(root / f"{i}_s_correct.wav"), seed=i)
    cache, log = tmp_path / "cache", tmp_path / "encoded.txt"
    args = [sys.executable, "-c", textwrap.dedent(_KILLED_CACHE_BUILD), str(root), str(cache), str(log)]
    env = {**os.environ, "PYTHONPATH": REPO}
    killed = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={**env, "KILL_AT_5": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(log.read_text().splitlines()) == 4
    log.write_text("")
    rerun = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert log.read_text().splitlines() == ["4_s_correct.wav", "5_s_correct.wav"]
    shutil.rmtree(cache)
    fresh = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert json.loads(rerun.stdout) == json.loads(fresh.stdout)


def test_killed_refit_never_leaves_a_loadable_mixed_tokenizer(tmp_path):
    """A fit killed while it overwrote a tokenizer directory left the old tokenizer.json beside the
    new centroids: the directory loaded as a tokenizer that no fit made."""
    from slmjax.units.errors import UnitsError
    from slmjax.units.features import MfccFeatures
    from slmjax.units.mfcc import MfccConfig
    from slmjax.units.tokenizer import load_tokenizer, save_tokenizer

    tokdir = str(tmp_path / "tok")
    rng = np.random.default_rng(0)
    save_tokenizer(tokdir, MfccFeatures(MfccConfig()), rng.standard_normal((4, 39)).astype(np.float32), {})
    assert load_tokenizer(tokdir).k == 4
    res = _child(f"""
        import os, signal
        import numpy as np
        from slmjax import fileio
        from slmjax.units.features import MfccFeatures
        from slmjax.units.mfcc import MfccConfig
        from slmjax.units import tokenizer
        real = fileio.atomic_write_json
        def killed(path, *a, **k):
            os.kill(os.getpid(), signal.SIGKILL)   # after centroids.npy, before its header
        fileio.atomic_write_json = killed
        tokenizer.save_tokenizer({tokdir!r}, MfccFeatures(MfccConfig()),
                                 np.ones((6, 39), np.float32), {{}})
    """)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    assert np.load(os.path.join(tokdir, "centroids.npy")).shape == (6, 39)   # the kill came late
    with pytest.raises(UnitsError, match="tokenizer.json"):
        load_tokenizer(tokdir)


# ---------------------------------------------------------------------------------------------
# Slow: the command lines, SIGKILLed at seeded random moments, then rerun to completion.

def _tree(root, skip=()):
    out = {}
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(d, f), root)
            if rel not in skip:
                out[rel] = hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
    return out


def _kill_then_finish(cmd, kill_after: float):
    env = {**os.environ, "PYTHONPATH": REPO}
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=env,
                         start_new_session=True)
    try:
        p.wait(kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.slow
@needs_espeak
def test_synth_corpus_and_bench_killed_at_random_moments(tmp_path):
    synth = [sys.executable, "-m", "slmjax.synth.cli"]
    cases = [("corpus", ["--hours=0.05"], ("corpus.json",), 1.5), ("bench", ["--n=4"], (), 5.0)]
    rng = random.Random(0)
    for cmd, extra, skip, tmax in cases:
        ref = tmp_path / f"{cmd}_ref"
        subprocess.run(synth + [cmd, f"--out={ref}", "--voices=2", "--workers=2", *extra], check=True,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True)
        want = _tree(ref, skip)
        for trial in range(3):
            out = tmp_path / f"{cmd}_{trial}"
            t = rng.uniform(0.3, tmax)
            _kill_then_finish(synth + [cmd, f"--out={out}", "--voices=2", "--workers=2", *extra], t)
            assert _tree(out, skip) == want, (cmd, trial, t)
            assert _temps(out) == [], (cmd, trial, t)


@pytest.mark.slow
def test_units_encode_killed_at_random_moments(tmp_path):
    src = tmp_path / "src"
    for i in range(24):
        _wav(str(src / f"{i:03d}.wav"), seconds=1.0 + 0.1 * i, seed=i)
    units = [sys.executable, "-m", "slmjax.units.cli"]
    env = {**os.environ, "PYTHONPATH": REPO}
    subprocess.run(units + ["fit", f"--audio={src}", f"--out={tmp_path / 'tok'}", "--k=8"], check=True, cwd=REPO,
                   env=env, capture_output=True)
    enc = lambda out, *w: units + ["encode", f"--tokenizer={tmp_path / 'tok'}", f"--audio={src}",  # noqa: E731
                                   f"--out={out}", "--shard_utterances=3", *w]
    subprocess.run(enc(tmp_path / "ref"), check=True, cwd=REPO, env=env, capture_output=True)
    want = _tree(tmp_path / "ref")
    rng = random.Random(1)
    for trial in range(3):
        out = tmp_path / f"ds_{trial}"
        _kill_then_finish(enc(out), rng.uniform(0.5, 4.0))
        assert _tree(out) == want, trial
        assert _temps(out) == []
