"""The spoken corpus: manifest fields, durations, voices, --text files, leakage exclusion, the CLI."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import soundfile as sf

from slmjax.synth import corpus, engines, leakage, sblimp, storycloze
from slmjax.synth.errors import SynthError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bench"))
    v = engines.parse_voices("1")
    sblimp.build(root, 12, v, seed=0, workers=2, splits=("dev",))
    storycloze.build(root, 6, v, seed=0, workers=2)
    return root


def _bench_texts(root):
    import csv

    with open(os.path.join(root, "syntactic", "dev", "gold.csv"), newline="") as f:
        sentences = {leakage.normalize(r["transcription"]) for r in csv.DictReader(f)}
    with open(os.path.join(root, "meta", "sSC.csv"), newline="") as f:
        contexts = {leakage.normalize(" ".join(leakage.split_sentences(r["text"])[:4])) for r in csv.DictReader(f)}
    return sentences, contexts


def test_builtin_corpus_manifest_and_audio(tmp_path, bench):
    out = str(tmp_path / "c")
    voices = engines.parse_voices("2")
    s = corpus.build(out, hours=60 / 3600, voices=voices, seed=5, exclude=[bench], workers=2, test_fraction=0.3)
    rows = [json.loads(line) for line in open(os.path.join(out, "manifest.jsonl"))]
    assert len(rows) == s["utterances"] >= 2
    total = 0.0
    for r in rows:
        assert set(r) == {"path", "id", "text", "voice", "duration", "split", "topic"}
        assert not os.path.isabs(r["path"]) and r["split"] in ("train", "test")
        info = sf.info(os.path.join(out, r["path"]))
        assert (info.samplerate, info.channels) == (16000, 1)
        assert r["duration"] == pytest.approx(info.frames / 16000, abs=1e-3)
        total += r["duration"]
    assert 60 <= total < 60 + max(r["duration"] for r in rows)  # stops right after the target
    assert set(s["per_voice"]) == {v.spec for v in voices}
    assert len(list((tmp_path / "c" / "wavs").rglob("*.wav"))) == len(rows)  # no stray files
    # leakage, checked here by plain string search rather than by the hashes the code uses
    sentences, contexts = _bench_texts(bench)
    for r in rows:
        norm = leakage.normalize(r["text"])
        assert not any(c in norm for c in contexts)
        assert not any(leakage.normalize(x) in sentences for x in leakage.split_sentences(r["text"]))
    assert s["leakage"]["benchmark_hashes"] > 0
    # a rerun resumes: no corpus file is synthesised again, the same manifest
    before = open(os.path.join(out, "manifest.jsonl")).read()
    mtimes = [os.stat(os.path.join(out, r["path"])).st_mtime_ns for r in rows]
    s2 = corpus.build(out, hours=60 / 3600, voices=voices, seed=5, exclude=[bench], workers=1, test_fraction=0.3)
    assert open(os.path.join(out, "manifest.jsonl")).read() == before
    assert [os.stat(os.path.join(out, r["path"])).st_mtime_ns for r in rows] == mtimes
    assert s2["already_there"] == len(rows)


def test_text_file_with_benchmark_items_is_filtered(tmp_path, bench):
    import csv

    with open(os.path.join(bench, "meta", "tSC.csv"), newline="") as f:
        story = next(csv.DictReader(f))["text"]
    with open(os.path.join(bench, "syntactic", "dev", "gold.csv"), newline="") as f:
        sentence = next(csv.DictReader(f))["transcription"]
    ctx = " ".join(leakage.split_sentences(story)[:4])
    lines = [{"id": "ok1", "text": "The sun was warm. A bird sang."},
             {"id": "leak_sentence", "text": f"Hello there. {sentence.upper()} Bye."},
             {"id": "leak_context", "text": f"It was morning. {ctx} Then everyone slept."},
             {"text": "A short clean line about a red boat."}]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = str(tmp_path / "c")
    s = corpus.build(out, hours=0, voices=engines.parse_voices("2"), text=str(path), exclude=[bench], workers=1)
    rows = corpus.read_manifest(os.path.join(out, "manifest.jsonl"))
    assert [r["id"] for r in rows] == ["ok1", "t-00000004"]
    assert s["leakage"]["texts_dropped"] == 2 and os.path.isabs(rows[0]["path"])


def test_plain_text_tinystories_format(tmp_path):
    path = tmp_path / "stories.txt"
    path.write_text("One day a cat\nsat down.\n<|endoftext|>\nThe end came soon.\n<|endoftext|>\n")
    out = str(tmp_path / "c")
    corpus.build(out, hours=0, voices=engines.parse_voices("1"), text=str(path), workers=1)
    rows = corpus.read_manifest(os.path.join(out, "manifest.jsonl"))
    assert [r["text"] for r in rows] == ["One day a cat sat down.", "The end came soon."]
    shard = tmp_path / "data00.json"  # TinyStories' JSON shards: an array of objects with a "story"
    shard.write_text(json.dumps([{"story": "A dog ran.\n\nIt was fast.", "source": "x"}, {"story": "Bye now."}]))
    corpus.build(str(tmp_path / "j"), hours=0, voices=engines.parse_voices("1"), text=str(shard), workers=1)
    rows = corpus.read_manifest(str(tmp_path / "j" / "manifest.jsonl"))
    assert [(r["id"], r["text"]) for r in rows] == [("data00-00000000", "A dog ran. It was fast."),
                                                    ("data00-00000001", "Bye now.")]


def test_a_rerun_with_other_settings_is_refused_before_it_relabels_audio(tmp_path):
    """Existing wavs are skipped on a rerun: with another seed or voice list they would hold other
    texts or voices than the new manifest says, so such a rerun is refused, naming the fields."""
    out = str(tmp_path / "c")
    one = engines.parse_voices("1")
    corpus.build(out, hours=5 / 3600, voices=one, seed=5, workers=1)
    before = open(os.path.join(out, "manifest.jsonl")).read()
    with pytest.raises(SynthError) as e:
        corpus.build(out, hours=5 / 3600, voices=one, seed=6, workers=1)
    assert "holds corpus audio made with other settings (seed: 5 there vs 6 now)" in str(e.value)
    assert "\n" not in str(e.value) and f"delete {os.path.join(out, 'wavs')}" in str(e.value)
    assert open(os.path.join(out, "manifest.jsonl")).read() == before
    corpus.build(out, hours=10 / 3600, voices=one, seed=5, workers=1)   # more hours: the same files
    shutil.rmtree(os.path.join(out, "wavs"))                              # audio gone: free again
    corpus.build(out, hours=5 / 3600, voices=one, seed=6, workers=1)

    root = str(tmp_path / "b")
    storycloze.build(root, 2, one, seed=0, workers=1)
    with pytest.raises(SynthError, match=r"voices: \['espeak:en-us\+m3:s170:p45'\] there vs "):
        storycloze.build(root, 2, engines.parse_voices("2")[1:], seed=0, workers=1)
    storycloze.build(root, 2, one, seed=0, workers=1)                     # the same settings: resumes


def test_settings_of_an_older_build_are_refused(tmp_path):
    """A corpus made before speeds were clipped to 80-450 wpm, and an sWUGGY split whose non-words
    were checked against another espeak-ng's pronunciations, record other settings: a rerun would
    label old files with the new rules."""
    from slmjax.synth import phonemes, swuggy
    one = engines.parse_voices("1")
    out = str(tmp_path / "c")
    corpus.build(out, hours=2 / 3600, voices=one, seed=5, workers=1)
    record = os.path.join(out, ".slmjax_corpus.json")
    old = json.load(open(record))
    assert old["speed_range"] == [80, 450]
    del old["speed_range"]
    json.dump(old, open(record, "w"))
    with pytest.raises(SynthError, match=r"speed_range: '<absent>' there vs \[80, 450\] now"):
        corpus.build(out, hours=2 / 3600, voices=one, seed=5, workers=1)

    root = str(tmp_path / "b")
    swuggy.build(root, 2, one, seed=0, workers=1)
    record = os.path.join(root, ".slmjax_swuggy.json")
    old = json.load(open(record))
    if swuggy.system_words()[1]:
        assert old["word_list_phonemes"] == phonemes.engine_version()
    old["word_list_phonemes"] = "eSpeak NG text-to-speech: 1.49.0"
    json.dump(old, open(record, "w"))
    with pytest.raises(SynthError, match="word_list_phonemes: 'eSpeak NG text-to-speech: 1.49.0' there"):
        swuggy.build(root, 2, one, seed=0, workers=1)


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(SynthError, match="does not exist"):
        corpus.build(str(tmp_path / "c"), 0, engines.parse_voices("1"), text=str(tmp_path / "none.txt"))
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"txt": 1}\n')
    with pytest.raises(SynthError, match="bad.jsonl:2"):
        corpus.build(str(tmp_path / "c"), 0, engines.parse_voices("1"), text=str(tmp_path / "bad.jsonl"))
    with pytest.raises(SynthError, match="neither exclude"):
        corpus.build(str(tmp_path / "c"), 0.01, engines.parse_voices("1"), exclude=[str(tmp_path)])


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "slmjax.synth.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO)


def test_cli_errors_help_and_check(bench):
    p = _cli("corpus", "--out=/tmp/never", "--voices=espeak:en:q1")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "sSPEED or pPITCH" in p.stderr
    p = _cli("sblimp", "--voices=espeak:xx-nope", "--out=/tmp/never", "--n=1", "--splits=dev")
    assert p.returncode == 2 and "no voice 'xx-nope'" in p.stderr and "Traceback" not in p.stderr
    assert "slmjax-synth corpus --out=DIR" in _cli("--help").stdout
    p = _cli("check", f"--out={bench}")
    assert p.returncode == 0 and json.loads(p.stdout)["problems"] == []


def test_a_text_the_engine_cannot_speak_is_skipped_and_recorded(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in
                              (("a", "A fine line."), ("b", "..."), ("c", "Another fine line."))) + "\n")
    out = tmp_path / "c"
    s = corpus.build(str(out), hours=0, voices=engines.parse_voices("1"), text=str(path), workers=1)
    rows = corpus.read_manifest(str(out / "manifest.jsonl"))
    assert [r["id"] for r in rows] == ["a", "c"] and s["skipped_texts"] == 1
    (skip,) = [json.loads(line) for line in open(out / "skipped.jsonl")]
    assert skip["id"] == "b" and "silence" in skip["reason"]
    assert sorted(p.name for p in (out / "wavs").rglob("*.wav")) == sorted(os.path.basename(r["path"]) for r in rows)


def test_file_names_stay_unique_across_batches_after_a_failure(tmp_path):
    # the first batch (3 texts at this target) holds a failure between two good texts; later batches follow
    texts = [("x0", "One.")] + [("x1", "...")] + [(f"x{i}", " ".join(["hello"] * i) + ".") for i in range(2, 9)]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in texts) + "\n")
    out = tmp_path / "c"
    corpus.build(str(out), hours=45 / 3600, voices=engines.parse_voices("1"), text=str(path), workers=2)
    rows = corpus.read_manifest(str(out / "manifest.jsonl"))
    assert [r["id"] for r in rows] == ["x0"] + [f"x{i}" for i in range(2, 9)]
    assert len({r["path"] for r in rows}) == len(rows)
    durations = [sf.info(r["path"]).frames / 16000 for r in rows]
    assert durations == sorted(durations)  # each file holds its own text: one more word, a longer file


def test_corpus_json_counts_the_corpus_files_made_now_and_found(tmp_path):
    # Texts read past the target are synthesised and then removed: they were counted as
    # synthesised_now (a fresh 12-utterance corpus said 16) and every complete rerun said it
    # synthesised some files again.
    out = str(tmp_path / "c")
    voices = engines.parse_voices("3")
    s = corpus.build(out, hours=240 / 3600, voices=voices, seed=0, workers=2)
    on_disk = list((tmp_path / "c" / "wavs").rglob("*.wav"))
    assert s["utterances"] == len(on_disk) >= 2
    assert (s["synthesised_now"], s["already_there"]) == (len(on_disk), 0)
    s2 = corpus.build(out, hours=240 / 3600, voices=voices, seed=0, workers=2)
    assert (s2["synthesised_now"], s2["already_there"]) == (0, len(on_disk))
