"""Unit datasets: real speech, bad inputs, workers + merge, reruns, sources, and the CLI."""

import filecmp
import functools
import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile as sf

from slmjax.units import UnitsError, load_tokenizer
from slmjax.units.encode import encode_dataset
from slmjax.units.features import MfccFeatures
from slmjax.units.fit import fit_tokenizer
from slmjax.units.ids import collapse
from slmjax.units.sources import holdout_split, list_utterances
from slmjax.units.tokenizer import save_tokenizer
from slmjax.units.writer import read_dataset, read_durations

SPEECH = "/usr/share/pocketsphinx/test/data"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tone(seed, seconds=1.0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f = rng.uniform(100, 900, size=3)
    return (0.2 * sum(np.sin(2 * np.pi * fi * t * (1 + 0.3 * t)) for fi in f) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _write_good(folder, n, start=0):
    os.makedirs(folder, exist_ok=True)
    for i in range(start, start + n):
        sf.write(os.path.join(folder, f"good{i:02d}.wav"), _tone(i, 0.5 + 0.1 * i), 16000)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    _write_good(root / "audio", 6)
    fit_tokenizer(MfccFeatures(), list_utterances(str(root / "audio")), str(root / "tok"), k=8, progress=False)
    return str(root / "tok")


def _same_tree(a, b):
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    for n in names:
        pa, pb = os.path.join(a, n), os.path.join(b, n)
        if os.path.isdir(pa):
            _same_tree(pa, pb)
        else:
            assert filecmp.cmp(pa, pb, shallow=False), n


def test_real_speech_encodes_identically_twice(tmp_path):
    if not os.path.isdir(SPEECH):
        pytest.skip(f"real speech absent: install the Debian package pocketsphinx-testdata ({SPEECH})")
    utts = list_utterances(SPEECH, holdout=0.0)
    assert len(utts) >= 5
    tok = fit_tokenizer(MfccFeatures(), utts, str(tmp_path / "tok"), k=50, progress=False)
    m1 = encode_dataset(tok, utts, str(tmp_path / "a"), progress=False)
    m2 = encode_dataset(load_tokenizer(str(tmp_path / "tok")), list_utterances(SPEECH, holdout=0.0), str(tmp_path / "b"),
                        progress=False)
    _same_tree(tmp_path / "a", tmp_path / "b")
    assert m1 == m2 and m1["skipped"] == 0 and m1["splits"]["train"]["seconds"] > 30
    assert (m1["vocab_size"], m1["eos_id"], m1["pad_id"], m1["frame_rate"]) == (52, 50, 51, 100.0)
    seqs = read_dataset(str(tmp_path / "a"), "train")
    assert len(seqs) == len(utts) and all(s[-1] == 50 and (s[:-1] < 50).all() for s in seqs)
    assert all((np.diff(s[:-1]) != 0).all() for s in seqs)  # repeats collapsed
    assert np.array_equal(seqs[0][:-1], tok.encode_file(utts[0].source))
    units_per_second = m1["splits"]["train"]["units"] / m1["splits"]["train"]["seconds"]
    assert 10 < units_per_second < 100  # collapsed 100 Hz frames


def test_bad_inputs_skipped_with_reasons(tmp_path, tok_dir):
    audio = tmp_path / "mixed"
    _write_good(audio / "sub", 3)
    (audio / "corrupt.wav").write_bytes(b"RIFF\x00\x01garbage" + os.urandom(500))
    (audio / "empty.wav").write_bytes(b"")
    sf.write(audio / "nosamples.wav", np.zeros(0, np.float32), 16000)
    sf.write(audio / "nan.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    sf.write(audio / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(audio / "short.wav", _tone(1, 0.01), 16000)
    # a wav cut off in a copy: libsndfile reads the half that is there without an error
    sf.write(audio / "cut.wav", _tone(1, 2.0), 16000)
    whole = (audio / "cut.wav").read_bytes()
    (audio / "cut.wav").write_bytes(whole[:len(whole) // 2])
    # a wav streamed to a pipe declares no length (0xffffffff): whole, so encoded
    sf.write(audio / "sub" / "streamed.wav", _tone(1, 1.0), 16000)
    streamed = bytearray((audio / "sub" / "streamed.wav").read_bytes())
    streamed[40:44] = b"\xff\xff\xff\xff"
    (audio / "sub" / "streamed.wav").write_bytes(bytes(streamed))
    # sox streaming 24-bit audio: 0x7ffff000 rounded down to its 3-byte blocks, also whole
    sf.write(audio / "sub" / "streamed24.wav", _tone(2, 1.0), 16000, subtype="PCM_24")
    streamed = bytearray((audio / "sub" / "streamed24.wav").read_bytes())
    assert streamed[36:40] == b"data"
    streamed[40:44] = (0x7FFFF000 // 3 * 3).to_bytes(4, "little")
    (audio / "sub" / "streamed24.wav").write_bytes(bytes(streamed))
    (audio / "notes.txt").write_text("not audio")
    m = encode_dataset(load_tokenizer(tok_dir), list_utterances(str(audio), holdout=0.0), str(tmp_path / "ds"), progress=False)
    assert m["splits"]["train"]["utterances"] == 5 and m["skipped"] == 7
    rows = [json.loads(line) for line in open(tmp_path / "ds" / "skipped.jsonl")]
    reasons = {os.path.basename(r["source"]): r["reason"].split(":")[0] for r in rows}
    assert reasons == {"corrupt.wav": "unreadable", "empty.wav": "unreadable", "nosamples.wav": "empty",
                       "nan.wav": "non-finite", "silent.wav": "silent", "short.wav": "too short",
                       "cut.wav": "truncated"}
    cut = next(r["reason"] for r in rows if r["source"].endswith("cut.wav"))
    assert cut == f"truncated: the header declares 64000 bytes of audio, the file holds {len(whole) // 2 - 44}"


def test_an_unreadable_subfolder_is_a_skipped_input_with_its_reason(tmp_path, tok_dir, monkeypatch):
    # os.walk left a folder it could not list out without a word: its audio was simply missing.
    _write_good(tmp_path / "audio" / "train" / "ok", 2)
    (tmp_path / "audio" / "train" / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path="."):   # a permission error, as for a non-root user (tests run as root)
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)
    monkeypatch.setattr(os, "scandir", scandir)
    utts = list_utterances(str(tmp_path / "audio"), holdout=0.0)
    assert [(u.uid, u.split) for u in utts][-1] == ("train/locked/", "train")
    m = encode_dataset(load_tokenizer(tok_dir), utts, str(tmp_path / "ds"), progress=False)
    assert m["splits"]["train"]["utterances"] == 2 and m["skipped"] == 1
    rows = [json.loads(line) for line in open(tmp_path / "ds" / "skipped.jsonl")]
    assert rows == [{"source": str(tmp_path / "audio" / "train" / "locked"), "id": "train/locked/",
                     "reason": "folder cannot be read: Permission denied"}]
    def locked_root(path="."):
        raise PermissionError(13, "Permission denied", os.fspath(path))
    monkeypatch.setattr(os, "scandir", locked_root)
    with pytest.raises(UnitsError, match="^cannot list audio folder .*/audio: Permission denied$"):
        list_utterances(str(tmp_path / "audio"))


def test_nothing_encoded_is_one_clear_error(tmp_path, tok_dir):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.wav").write_bytes(b"junk")
    with pytest.raises(UnitsError, match=r"nothing could be encoded: all 1 inputs were skipped \(unreadable\)"):
        encode_dataset(load_tokenizer(tok_dir), list_utterances(str(tmp_path / "bad")), str(tmp_path / "ds"), progress=False)
    with pytest.raises(UnitsError, match="no audio found"):
        list_utterances(str(tmp_path / "ds"))


def test_two_workers_then_merge_equal_one_worker_and_rerun_skips(tmp_path, tok_dir, monkeypatch):
    _write_good(tmp_path / "audio", 7)
    tok = load_tokenizer(tok_dir)
    utts = list_utterances(str(tmp_path / "audio"), holdout=0.3)
    assert {u.split for u in utts} == {"train", "test"}
    one = encode_dataset(tok, utts, str(tmp_path / "one"), shard_utterances=2, progress=False)
    assert encode_dataset(tok, utts, str(tmp_path / "two"), num_workers=2, worker_index=1, shard_utterances=2,
                          progress=False) is None  # worker 0's shards are still missing
    assert not os.path.exists(tmp_path / "two" / "manifest.json")
    two = encode_dataset(tok, utts, str(tmp_path / "two"), num_workers=2, worker_index=0, shard_utterances=2, progress=False)
    assert one == two and sum(len(s["shards"]) for s in one["splits"].values()) >= 3
    _same_tree(tmp_path / "one", tmp_path / "two")
    import slmjax.units.encode as enc

    monkeypatch.setattr(enc, "encode_shard", lambda *a, **k: pytest.fail("a complete shard was re-encoded"))
    assert encode_dataset(tok, utts, str(tmp_path / "one"), shard_utterances=2, progress=False) == one
    with pytest.raises(UnitsError, match="another source"):
        encode_dataset(tok, utts[:3], str(tmp_path / "one"), shard_utterances=2, progress=False)


def test_durations_kept_beside_units(tmp_path, tok_dir):
    _write_good(tmp_path / "audio", 2)
    tok = load_tokenizer(tok_dir)
    m = encode_dataset(tok, list_utterances(str(tmp_path / "audio"), holdout=0.0), str(tmp_path / "ds"), durations=True,
                       progress=False)
    assert m["durations"]
    seqs = read_dataset(str(tmp_path / "ds"), "train")
    durs = read_durations(str(tmp_path / "ds"), "train")
    for i, (s, d) in enumerate(zip(seqs, durs)):
        wave = sf.read(tmp_path / "audio" / f"good{i:02d}.wav", dtype="float32")[0]
        frames = tok.frame_units(wave)
        assert len(d) == len(s) and d[-1] == 0 and d.sum() == len(frames)  # EOS has duration 0
        assert np.array_equal(np.repeat(s[:-1], d[:-1]), frames)


def test_sources_tsv_jsonl_and_hashed_holdout(tmp_path):
    _write_good(tmp_path / "audio", 3)
    (tmp_path / "valid.tsv").write_text(f"{tmp_path / 'audio'}\ngood00.wav\t8000\ngood01.wav\t9600\n")
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"path": "audio/good02.wav", "id": "x2", "split": "test", "text": "hi"}) + "\n"
        + json.dumps({"path": str(tmp_path / "audio" / "good00.wav"), "id": "x0"}) + "\n")
    utts = list_utterances(f"{tmp_path / 'valid.tsv'},{tmp_path / 'm.jsonl'}", holdout=0.0)
    assert [(u.uid, u.split) for u in utts] == [("good00", "valid"), ("good01", "valid"), ("x2", "test"), ("x0", "train")]
    assert utts[2].load().shape == (16000 * 0.7,)
    ids = [f"spk{i}/utt{i}" for i in range(20000)]
    held = [holdout_split(i, 0.01) for i in ids]
    assert held == [holdout_split(i, 0.01) for i in ids]  # stable
    assert 0.007 < held.count("test") / len(ids) < 0.013
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(UnitsError, match="bad.jsonl:1: expected a JSON object with a 'path' field"):
        list_utterances(str(tmp_path / "bad.jsonl"))
    with pytest.raises(UnitsError, match="tfds:NAME"):
        list_utterances("tfds:onlyname")
    (tmp_path / "bogus.jsonl").write_text('{"path": "audio/good00.wav"}\n{"path": "audio/good01.wav", "split": "dev2"}\n')
    with pytest.raises(UnitsError, match=r"bogus.jsonl:2: unknown split 'dev2' \(expected one of train, valid, validation, dev, test"):
        list_utterances(str(tmp_path / "bogus.jsonl"))


def test_tfds_source_adapter(monkeypatch):
    """tfds:NAME:SPLIT through tfds.data_source (faked: writing a TFDS dataset needs TensorFlow)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    wave8k = (np.sin(np.arange(8000) / 5.0) * 16000).astype(np.int16)
    calls = {}

    class Audio:  # stands in for tfds.features.Audio (building that needs TensorFlow)
        sample_rate = 8000

    class Info:
        features = {"audio": Audio(), "id": object()}

    class Builder:
        info = Info()

    def data_source(name, split, data_dir, download):
        calls.update(name=name, split=split, data_dir=data_dir, download=download)
        return [{"audio": wave8k, "id": b"a"}, {"audio": wave8k[:4000], "id": b"b"}]

    monkeypatch.setattr(tfds, "data_source", data_source)
    monkeypatch.setattr(tfds, "builder", lambda name, data_dir: Builder())
    utts = list_utterances("tfds:speech/clean:validation", data_dir="/data/tfds")
    assert calls == {"name": "speech/clean", "split": "validation", "data_dir": "/data/tfds", "download": False}
    assert [(u.uid, u.split) for u in utts] == [("speech/clean:validation:0", "validation"), ("speech/clean:validation:1", "validation")]
    wave = utts[0].load()
    assert wave.dtype == np.float32 and wave.shape == (16000,)  # int16 scaled, resampled 8 -> 16 kHz
    assert 0.4 < np.abs(wave).max() < 0.6


def test_cli_fit_encode_with_unigram_tokens(tmp_path):
    _write_good(tmp_path / "audio", 6)
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    cli = [sys.executable, "-m", "slmjax.units.cli"]
    r = subprocess.run(cli + ["fit", f"--audio={tmp_path / 'audio'}", f"--out={tmp_path / 'tok'}", "--k=12",
                              "--coarse=unigram", "--coarse_vocab=40", "--holdout=0"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(cli + ["encode", f"--audio={tmp_path / 'audio'}", f"--out={tmp_path / 'ds'}",
                              f"--tokenizer={tmp_path / 'tok'}", "--holdout=0"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.load(open(tmp_path / "ds" / "manifest.json"))
    tok = load_tokenizer(str(tmp_path / "tok"))
    p = tok.coarse.vocab_size
    assert m["tokenizer"] == tok.identity and m["tokenizer"]["coarse"]["type"] == "unigram"
    assert m["tokenizer_dir"] == str((tmp_path / "tok").resolve())  # slmjax-eval finds the tokenizer here
    assert (m["vocab_size"], m["eos_id"], m["pad_id"]) == (p + 2, p, p + 1)
    seqs = read_dataset(str(tmp_path / "ds"), "train")
    wave = sf.read(tmp_path / "audio" / "good00.wav", dtype="float32")[0]
    units = collapse(tok.frame_units(wave))
    assert tok.coarse.decode(seqs[0][:-1]).tolist() == units.tolist() and seqs[0][-1] == p
    assert m["coarse"]["compression_ratio"] == pytest.approx(m["coarse"]["units"] / m["coarse"]["tokens"], abs=1e-4)
    assert m["coarse"]["compression_ratio"] >= 1.0  # tiny corpus; pieces over patterned units: test_units_ids
    r = subprocess.run(cli + ["encode", f"--audio={tmp_path / 'nowhere'}", f"--out={tmp_path / 'x'}",
                              f"--tokenizer={tmp_path / 'tok'}"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("slmjax-units: error: audio source not found")
    r = subprocess.run(cli + ["--help"], env=env, capture_output=True, text=True)
    assert "--tokenizer" in r.stdout and "slmjax-units fit" in r.stdout  # absl exits 1 after --help


@functools.lru_cache(maxsize=1)
def _flag_defaults() -> dict:
    """slmjax-units' flag defaults, read in a child process: importing its CLI here would define
    absl flags (--out, ...) that other CLIs imported by the test session define too."""
    code = ("import json; from slmjax.units import cli; "
            "print(json.dumps({n: cli.FLAGS[n].default for n in cli.FLAGS "
            "if cli.FLAGS.find_module_defining_flag(n) == cli.__name__}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _flags(**over):
    """slmjax-units flag values (defaults, then ``over``) for the *_from_flags entry points."""
    return types.SimpleNamespace(**{**_flag_defaults(), "holdout": 0.0, **over})


def _one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(UnitsError) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_merge_refuses_another_tokenizer_or_options(tmp_path, tok_dir):
    """`slmjax-units merge` checks plan.json as encode does: it never relabels a dataset."""
    from slmjax.units.encode import encode_from_flags

    _write_good(tmp_path / "audio", 2)
    ds = str(tmp_path / "ds")
    given = {"audio": str(tmp_path / "audio"), "out": ds, "tokenizer": tok_dir}
    encode_from_flags(_flags(**given))
    written = (tmp_path / "ds" / "manifest.json").read_bytes()
    save_tokenizer(str(tmp_path / "k1"), MfccFeatures(), np.zeros((1, 39), np.float32), {})  # vocab_size 3
    for change in [{"tokenizer": str(tmp_path / "k1")}, {"synthetic": True}, {"durations": True}, {"min_seconds": 0.1}]:
        msg = _one_line_error(encode_from_flags, _flags(**dict(given, **change)), merge_only=True)
        assert msg == (f"{ds} holds a dataset from another source, tokenizer or options; "
                       "use a new --out (merge needs the flags the dataset was encoded with)")
        assert (tmp_path / "ds" / "manifest.json").read_bytes() == written
    encode_from_flags(_flags(**given), merge_only=True)
    assert (tmp_path / "ds" / "manifest.json").read_bytes() == written
    empty = str(tmp_path / "empty")
    msg = _one_line_error(encode_from_flags, _flags(**dict(given, out=empty)), merge_only=True)
    assert msg == f"{empty} holds no encoded dataset (no plan.json): run `slmjax-units encode` first"
    assert not os.path.exists(empty)


def test_broken_tokenizer_and_output_dirs_are_one_line(tmp_path, tok_dir):
    bad = tmp_path / "bad"
    cents = open(os.path.join(tok_dir, "centroids.npy"), "rb").read()
    for name, data, error in [("tokenizer.json", b'{"format_version": 1, ', "JSONDecodeError: Expecting property name"),
                              ("centroids.npy", cents[:100], "ValueError: EOF: reading array header"),
                              ("centroids.npy", None, "FileNotFoundError: [Errno 2] No such file or directory")]:
        shutil.copytree(tok_dir, bad, dirs_exist_ok=True)
        if data is None:
            os.remove(bad / name)
        else:
            (bad / name).write_bytes(data)
        msg = _one_line_error(load_tokenizer, str(bad))
        assert msg.startswith(f"tokenizer file {bad / name} is missing or corrupt ({error}")
        assert msg.endswith("; refit the tokenizer")

    _write_good(tmp_path / "audio", 1)
    tok, utts = load_tokenizer(tok_dir), list_utterances(str(tmp_path / "audio"), holdout=0.0)
    (tmp_path / "plan").mkdir()
    (tmp_path / "plan" / "plan.json").write_text("{")
    msg = _one_line_error(encode_dataset, tok, utts, str(tmp_path / "plan"), progress=False)
    assert msg.startswith(f"{tmp_path / 'plan' / 'plan.json'} is corrupt (JSONDecodeError: ")
    (tmp_path / "file").write_text("x")
    for out, expected in [(tmp_path / "file", f"{tmp_path / 'file'} exists and is not a directory"),
                          (tmp_path / "file" / "ds", f"cannot create directory {tmp_path / 'file' / 'ds'}: Not a directory")]:
        assert _one_line_error(encode_dataset, tok, utts, str(out), progress=False) == expected


@pytest.mark.parametrize("flag,value,message", [
    ("k", -3, "--k must be >= 1, got -3"), ("k", 0, "--k must be >= 1, got 0"),
    ("kmeans_iters", 0, "--kmeans_iters must be >= 1, got 0"), ("kmeans_batch", 0, "--kmeans_batch must be >= 1, got 0"),
    ("max_frames", 0, "--max_frames must be >= 1, got 0"), ("fit_hours", 0.0, "--fit_hours must be > 0, got 0.0")])
def test_fit_refuses_out_of_range_flags(tmp_path, flag, value, message):
    from slmjax.units.fit import fit_from_flags

    _write_good(tmp_path / "audio", 2)
    flags = _flags(audio=str(tmp_path / "audio"), out=str(tmp_path / "tok"), **{"k": 4, flag: value})
    assert _one_line_error(fit_from_flags, flags) == message
    assert not os.path.exists(tmp_path / "tok")  # refused before reading any audio or writing anything
    # ... and before a HuBERT checkpoint is imported (here none exists: its error would come first)
    flags = _flags(audio=str(tmp_path / "audio"), out=str(tmp_path / "tok"), features="hubert",
                   hubert_checkpoint=str(tmp_path / "no-such-model"), **{"k": 4, flag: value})
    assert _one_line_error(fit_from_flags, flags) == message


def test_fit_records_skipped_inputs(tmp_path, capsys):
    from slmjax.units.fit import fit_from_flags

    _write_good(tmp_path / "audio", 3)
    (tmp_path / "audio" / "text.wav").write_bytes(b"not audio at all\n" * 40)
    (tmp_path / "audio" / "empty.wav").write_bytes(b"")
    (tmp_path / "audio" / "cut.wav").write_bytes((tmp_path / "audio" / "good00.wav").read_bytes()[:30])
    sf.write(tmp_path / "audio" / "silent.wav", np.zeros(16000, np.float32), 16000)
    fit_from_flags(_flags(audio=str(tmp_path / "audio"), out=str(tmp_path / "tok"), k=4))
    listed = str(tmp_path / "tok" / "skipped.jsonl")
    assert capsys.readouterr().out.strip().endswith(f"skipped 4 unusable input(s) (listed in {listed})")
    rows = {os.path.basename(r["source"]): r["reason"] for r in map(json.loads, open(listed))}
    assert sorted(rows) == ["cut.wav", "empty.wav", "silent.wav", "text.wav"]
    assert rows["empty.wav"].startswith("unreadable: empty or truncated file; soundfile: ")
    assert rows["cut.wav"].startswith("unreadable: empty or truncated file; soundfile: ")
    assert rows["text.wav"].startswith("unreadable: no decoder could read it (format?); soundfile: ")
    assert rows["silent.wav"] == "silent: peak amplitude below 0.0001"
    for name in ("good00.wav", "good01.wav", "good02.wav"):
        os.remove(tmp_path / "audio" / name)
    utts = list_utterances(str(tmp_path / "audio"))
    msg = _one_line_error(fit_tokenizer, MfccFeatures(), utts, str(tmp_path / "tok2"), k=4, progress=False)
    assert msg == (f"nothing could be read to fit the tokenizer: all 4 inputs were skipped (silent, unreadable); "
                   f"see {tmp_path / 'tok2' / 'skipped.jsonl'}")
    assert len(open(tmp_path / "tok2" / "skipped.jsonl").readlines()) == 4


@pytest.mark.parametrize("workers,index,message", [(0, 0, "--num_workers must be >= 1, got 0"),
                                                   (-2, 0, "--num_workers must be >= 1, got -2"),
                                                   (2, 2, r"--worker_index must be in \[0, 2\), got 2")])
def test_worker_flags_out_of_range_are_one_line(tmp_path, tok_dir, workers, index, message):
    _write_good(tmp_path / "audio", 1)
    utts = list_utterances(str(tmp_path / "audio"), holdout=0.0)
    with pytest.raises(UnitsError, match=message):
        encode_dataset(load_tokenizer(tok_dir), utts, str(tmp_path / "ds"), num_workers=workers, worker_index=index,
                       progress=False)
    assert not os.path.exists(tmp_path / "ds")


@pytest.mark.parametrize("over,message", [
    ({"coarse_vocab": 5}, "--coarse_vocab=5 must exceed k + 1 = 5 (all units plus <unk>)"),
    ({"coarse_vocab": 0}, "--coarse_vocab=0 must exceed k + 1 = 5 (all units plus <unk>)"),
    ({"k": 30000, "coarse_vocab": 40000}, "coarse tokens support k <= 20992, got 30000")])
def test_fit_refuses_coarse_settings_before_reading_audio(tmp_path, over, message):
    # found only after every feature was read and k-means fitted (hours on a real corpus)
    from slmjax.units.fit import fit_from_flags

    _write_good(tmp_path / "audio", 2)
    flags = _flags(audio=str(tmp_path / "audio"), out=str(tmp_path / "tok"), coarse="unigram", **{"k": 4, **over})
    import slmjax.units.fit as fit

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fit, "read_features", lambda *a, **k: pytest.fail("audio read before the coarse settings were checked"))
        assert _one_line_error(fit_from_flags, flags) == message
    assert not os.path.exists(tmp_path / "tok")


def test_tfds_sliced_split_is_its_split(monkeypatch):
    # tfds:NAME:train[:10%] made a split named 'train[:10%]' (shard files 'train[:10%]-00000-...'),
    # which training cannot find as 'train'
    tfds = pytest.importorskip("tensorflow_datasets")

    class Audio:
        sample_rate = 16000

    builder = types.SimpleNamespace(info=types.SimpleNamespace(features={"audio": Audio()}))
    monkeypatch.setattr(tfds, "data_source", lambda name, split, data_dir, download: [{"audio": np.zeros(800, np.int16)}] * 2)
    monkeypatch.setattr(tfds, "builder", lambda name, data_dir: builder)
    utts = list_utterances("tfds:speech:train[:10%],tfds:speech:train[10%:20%]")
    assert [(u.uid, u.split) for u in utts] == [("speech:train[:10%]:0", "train"), ("speech:train[:10%]:1", "train"),
                                                ("speech:train[10%:20%]:0", "train"), ("speech:train[10%:20%]:1", "train")]
    # LibriSpeech's splits: train_clean100 was a split of its own, so k-means fitted on every
    # utterance (test ones too, no 'train' split) and training refused the dataset
    utts = list_utterances("tfds:librispeech:train_clean100,tfds:librispeech:dev_other,"
                           "tfds:librispeech:test_clean")
    assert [u.split for u in utts] == ["train", "train", "dev", "dev", "test", "test"]
    assert utts[0].uid == "librispeech:train_clean100:0"
    from slmjax.units.sources import tfds_split_kind
    assert [tfds_split_kind(x) for x in ("validation[:5%]", "train_clean100+train_clean360",
                                         "train+test", "extra", "training", "tests")] == \
        ["validation", "train", None, None, None, None]   # None: the hashed --holdout decides


def test_hosts_starting_together_cannot_pin_two_plans(tmp_path, tok_dir, monkeypatch):
    # hosts that list different audio (a file still arriving) both found no plan.json and the later
    # write replaced the earlier one: each went on encoding shards of its own plan into one dataset
    import slmjax.units.writer as writer
    from slmjax import fileio

    _write_good(tmp_path / "audio", 2)
    utts = list_utterances(str(tmp_path / "audio"), holdout=0.0)
    plan = str(tmp_path / "ds" / "plan.json")
    state = {"raced": False}

    def other_host_first(path, *args, **kwargs):  # the other host's plan lands between our read and write
        if os.fspath(path) == plan and not state["raced"]:
            state["raced"] = True
            fileio.atomic_write_json(plan, {"fingerprint": "the other host's plan"})
            raise FileNotFoundError(path)
        return open(path, *args, **kwargs)

    monkeypatch.setattr(writer, "open", other_host_first, raising=False)
    with pytest.raises(UnitsError, match="another source"):
        encode_dataset(load_tokenizer(tok_dir), utts, str(tmp_path / "ds"), progress=False)
    assert json.load(open(plan)) == {"fingerprint": "the other host's plan"}
    assert not os.listdir(tmp_path / "ds" / "parts") and sorted(os.listdir(tmp_path / "ds")) == ["parts", "plan.json"]


def test_tfds_int64_audio_is_16_bit_pcm(monkeypatch, tmp_path):
    """TFDS Audio features default to dtype int64 holding the file's 16-bit samples (LibriSpeech...
    TED-LIUM); they were scaled by 2**63, so every utterance read as silence and was skipped."""
    tfds = pytest.importorskip("tensorflow_datasets")
    pcm = (_tone(3) * 30000).astype(np.int16)
    sf.write(tmp_path / "x.wav", pcm, 16000, subtype="PCM_16")
    ref, _ = sf.read(tmp_path / "x.wav", dtype="float32")  # soundfile's own scaling of 16-bit PCM

    class Audio:
        sample_rate = 16000

    builder = types.SimpleNamespace(info=types.SimpleNamespace(features={"speech": Audio()}))
    monkeypatch.setattr(tfds, "data_source", lambda name, split, data_dir, download: [{"speech": pcm.astype(np.int64)}])
    monkeypatch.setattr(tfds, "builder", lambda name, data_dir: builder)
    wave = list_utterances("tfds:tedlium/release3:train")[0].load()
    assert wave.dtype == np.float32
    np.testing.assert_array_equal(wave, ref)


def test_tfds_lazy_decode_records_are_decoded(monkeypatch, tmp_path):
    """TFDS lazy_decode configs (librispeech/lazy_decode) keep each file's encoded bytes in the record;
    they went to pcm_to_float and every utterance failed ('could not convert string to float')."""
    tfds = pytest.importorskip("tensorflow_datasets")
    sf.write(tmp_path / "x.flac", np.stack([_tone(4), _tone(5)], 1), 16000, subtype="PCM_16")
    stereo, _ = sf.read(tmp_path / "x.flac", dtype="float64")
    (tmp_path / "bad.flac").write_bytes(b"fLaC not really")

    class Audio:
        sample_rate = 16000

    builder = types.SimpleNamespace(info=types.SimpleNamespace(features={"speech": Audio()}))
    records = [{"speech": (tmp_path / "x.flac").read_bytes()}, {"speech": np.bytes_((tmp_path / "bad.flac").read_bytes())}]
    monkeypatch.setattr(tfds, "data_source", lambda name, split, data_dir, download: records)
    monkeypatch.setattr(tfds, "builder", lambda name, data_dir: builder)
    utts = list_utterances("tfds:librispeech/lazy_decode:test")
    np.testing.assert_allclose(utts[0].load(), stereo.mean(1), atol=1e-7)
    from slmjax.units.audio import BadAudio

    with pytest.raises(BadAudio, match=r"unreadable: encoded audio in tfds:librispeech/lazy_decode:test#1"):
        utts[1].load()


def test_tfds_audio_without_a_recorded_rate_needs_one(monkeypatch):
    """A TFDS Audio feature without sample_rate (Common Voice's: 48 kHz mp3) was read as 16 kHz,
    silently giving units of audio slowed 3x; its rate is now given as @RATE, and one that
    contradicts a recorded rate is refused."""
    tfds = pytest.importorskip("tensorflow_datasets")
    wave48k = (np.sin(2 * np.pi * 440 * np.arange(48000) / 48000) * 16000).astype(np.int16)

    class Audio:
        sample_rate = None

    builder = types.SimpleNamespace(info=types.SimpleNamespace(features={"audio": Audio()}))
    monkeypatch.setattr(tfds, "data_source", lambda name, split, data_dir, download: [{"audio": wave48k}])
    monkeypatch.setattr(tfds, "builder", lambda name, data_dir: builder)
    with pytest.raises(UnitsError, match=r"records no sample rate; give it as tfds:common_voice/en:train@RATE"):
        list_utterances("tfds:common_voice/en:train")
    (utt,) = list_utterances("tfds:common_voice/en:train@48000")
    assert (utt.uid, utt.split) == ("common_voice/en:train:0", "train")
    wave = utt.load()
    assert wave.shape == (16000,)  # one second, resampled 48 -> 16 kHz
    # the tone is still 440 Hz: its spectrum peaks at bin 440 of a 1 s window
    assert np.argmax(np.abs(np.fft.rfft(wave))) == 440
    Audio.sample_rate = 16000
    with pytest.raises(UnitsError, match="@48000 but the dataset's 'audio' feature records 16000 Hz"):
        list_utterances("tfds:common_voice/en:train@48000")
    with pytest.raises(UnitsError, match="@RATE must be a sample rate in Hz"):
        list_utterances("tfds:common_voice/en:train@fast")


@pytest.mark.parametrize("max_seconds,max_frames,frames", [
    (2.5, None, 250), (2.25, 10_000, 225), (100.0, 130, 130), (3.0, None, 300), (2.5, 240, 240)])
def test_fit_features_stop_at_the_hours_and_frames_limits(max_seconds, max_frames, frames):
    # Whole files were taken until a limit was passed: one long recording went far past
    # --max_frames, the fit's memory bound. 100 frames per second of audio, 1 s per file here.
    from slmjax.units.fit import read_features
    from slmjax.units.sources import Utterance

    class Frames:
        min_samples = 1

        def __call__(self, wave):
            return np.arange(wave.size // 160, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)

    utts = [Utterance(uid=str(i), source=str(i), split="train", load=functools.partial(_tone, i)) for i in range(5)]
    feats, skipped = read_features(Frames(), utts, max_seconds, seed=0, progress=False, max_frames=max_frames)
    assert sum(len(f) for f in feats) == frames and skipped == []
    assert [len(f) for f in feats[:-1]] == [100] * (len(feats) - 1)   # only the last file is cut


@pytest.mark.parametrize("min_seconds", [float("nan"), float("inf"), -1.0])
def test_a_min_seconds_that_is_no_duration_is_one_line_and_pins_no_plan(tmp_path, tok_dir, min_seconds):
    # NaN or inf reached int(round(min_seconds * 16000)) as a ValueError/OverflowError traceback,
    # after plan.json was pinned with it: the rerun with a good value was then refused as a
    # dataset "from another source, tokenizer or options".
    from slmjax.units.encode import encode_from_flags

    _write_good(tmp_path / "audio", 2)
    ds = tmp_path / "ds"
    given = {"audio": str(tmp_path / "audio"), "out": str(ds), "tokenizer": tok_dir}
    msg = _one_line_error(encode_from_flags, _flags(**dict(given, min_seconds=min_seconds)))
    assert msg == f"--min_seconds must be a finite number >= 0, got {min_seconds}"
    assert not (ds / "plan.json").exists()
    encode_from_flags(_flags(**given))
    assert (ds / "manifest.json").exists()


def test_a_rerun_over_another_folder_with_the_same_names_is_refused(tmp_path, tok_dir):
    """Folder b holds files named as folder a's (other audio): a rerun into a's dataset kept a's
    shards and filled what a skipped from b, mixing two sources under one manifest."""
    from slmjax.units.writer import plan_fingerprint, plan_shards

    a, b, out = tmp_path / "a", tmp_path / "b", str(tmp_path / "ds")
    _write_good(a, 3)
    _write_good(b, 3, start=10)
    for name in sorted(os.listdir(b)):                     # b's files under a's names
        os.rename(b / name, b / name.replace("good1", "good0"))
    assert sorted(os.listdir(a)) == sorted(os.listdir(b))
    tok = load_tokenizer(tok_dir)
    first = encode_dataset(tok, list_utterances(str(a), holdout=0.0), out, progress=False)
    with pytest.raises(UnitsError, match="holds a dataset from another source, tokenizer or options"):
        encode_dataset(tok, list_utterances(str(b), holdout=0.0), out, progress=False)
    # the same folder by another spelling (relative, from elsewhere) is the same source
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert encode_dataset(tok, list_utterances("a", holdout=0.0), out, progress=False) == first
    finally:
        os.chdir(cwd)
    # ... and through a link to the folder
    os.symlink(a, tmp_path / "link")
    assert encode_dataset(tok, list_utterances(str(tmp_path / "link"), holdout=0.0), out,
                          progress=False) == first
    # a plan pinned by an older slmjax (no sources in it) is resumed, not refused
    older = str(tmp_path / "older")
    encode_dataset(tok, list_utterances(str(a), holdout=0.0), older, progress=False)
    utts = list_utterances(str(a), holdout=0.0)
    options = {"min_seconds": 0.0, "synthetic": False, "durations": False, "shard_utterances": 2000}
    pinned = plan_fingerprint(plan_shards(utts, 2000), tok.identity, options, sources=False)
    with open(os.path.join(older, "plan.json"), "w") as f:
        json.dump({"fingerprint": pinned}, f)
    assert encode_dataset(tok, utts, older, progress=False) == first
