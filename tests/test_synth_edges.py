"""Edge inputs of slmjax.synth: quoted dialogue, odd text files, odd voice lists, checker gaps,
and corpus outputs that must not depend on the worker count."""

import json
import os
import shutil
import subprocess

import pytest

from slmjax.synth import corpus, engines, layout, leakage, textsrc
from slmjax.synth.errors import SynthError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def test_a_benchmark_sentence_inside_quoted_dialogue_leaks():
    # TinyStories is full of dialogue: a sentence that ends inside its closing quote is still a sentence.
    ex = leakage.Exclusions(sentence={leakage.text_hash("The dog sleeps every day.")})
    assert ex.leaks('Mom smiled. "The dog sleeps every day." Then they went home.')
    assert ex.leaks("Mom smiled. 'The dog sleeps every day!' Then they went home.")
    assert ex.leaks('Mom smiled. \u201cThe dog sleeps every day.\u201d Then they went home.')
    # a quote ending in a comma before its speech tag speaks the same words: TinyStories' usual
    # dialogue, and the sentence after a colon, a semicolon or a full stop with no space after it
    leaking = ['Mom smiled. "The dog sleeps every day," said Tom. Then they went home.',
               '\u201cThe dog sleeps every day,\u201d said Tom.',
               "Tom said: The dog sleeps every day. Then it rained.",
               "Tom was tired; the dog sleeps every day. Then it rained.",
               "Tom was tired.The dog sleeps every day. Then it rained."]
    other = ['"The dog sleeps every day, and night," said Tom.',
             "Tom said: the dog sleeps every day and night."]
    assert [ex.leaks(t) for t in leaking + other] == [True] * len(leaking) + [False] * len(other)
    ctx = ["Ann had a kite.", "It was red.", "The wind came.", "The kite flew away."]
    ex = leakage.Exclusions(context={leakage.text_hash(" ".join(ctx))})
    assert ex.leaks('Hi. "Ann had a kite." "It was red." The wind came. (The kite flew away.) Bye.')


def test_a_benchmark_sentence_quoted_after_a_speech_tag_leaks():
    # `Mom said, "..."`, the commonest dialogue in TinyStories: the split sentence began with the
    # speech tag, so its hash never matched and the benchmark sentence stayed in the corpus
    ex = leakage.Exclusions(sentence={leakage.text_hash("The dog sleeps every day.")})
    assert ex.leaks('Lily said, "The dog sleeps every day." Then she left.')
    assert ex.leaks("Lily said, \u201cThe dog sleeps every day!\u201d")
    assert ex.leaks("Tom's mom said, 'The dog sleeps every day.'")
    assert ex.leaks('He said, "I know. The dog sleeps every day."')
    assert not ex.leaks('Lily said, "The dog sleeps every day and night."')
    assert not ex.leaks("Tom's dog didn't sleep. 'The cat sleeps.'")


def test_text_files_with_a_bom_blank_lines_of_spaces_or_another_encoding(tmp_path):
    shard = tmp_path / "data00.json"  # a JSON array saved with a UTF-8 byte order mark (Windows editors)
    shard.write_bytes("\ufeff".encode() + json.dumps([{"story": "A dog ran."}]).encode())
    assert list(textsrc.from_file(str(shard))) == [{"id": "data00-00000000", "text": "A dog ran."}]
    plain = tmp_path / "s.txt"  # stories separated by a line that holds only spaces and a tab
    plain.write_bytes("\ufeffA cat sat.\n  \t\nA dog ran.\r\n \r\nThe end.\n".encode())
    assert [r["text"] for r in textsrc.from_file(str(plain))] == ["A cat sat.", "A dog ran.", "The end."]
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\xe9 time.\n".encode("latin-1"))
    with pytest.raises(SynthError, match=r"latin\.txt: not UTF-8 text") as e:
        list(textsrc.from_file(str(latin)))
    assert "\n" not in str(e.value)


def _jsonl(path, texts):
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in texts))
    return str(path)


@needs_espeak
def test_one_voice_at_two_speeds_is_counted_as_two_voices(tmp_path):
    text = _jsonl(tmp_path / "t.jsonl", [(f"u{i}", f"Line number {i}.") for i in range(4)])
    voices = engines.parse_voices("espeak:en-us:s140:p50,espeak:en-us:s210:p50")
    s = corpus.build(str(tmp_path / "c"), hours=0, voices=voices, text=text, workers=1)
    # utterances take the voices in turn: u0, u2 the slow one, u1, u3 the fast one
    assert s["per_voice"] == {"espeak:en-us:s140:p50": 2, "espeak:en-us:s210:p50": 2}


@needs_espeak
def test_corpus_summary_and_skipped_list_do_not_depend_on_the_worker_count(tmp_path):
    bench = tmp_path / "bench"
    leakage.write(str(bench), "planted", sentences=["The red boat sank."])
    # the first text alone reaches the 0.5 s target; what follows it is not part of the corpus
    text = _jsonl(tmp_path / "t.jsonl", [("a", "A fine and rather long line to speak."),
                                         ("b", "The red boat sank."), ("c", "..."), ("d", "Another line.")])
    for workers in (1, 3):  # 3 workers take a, b and c in their first batch
        out = tmp_path / f"w{workers}"
        s = corpus.build(str(out), hours=0.5 / 3600, voices=engines.parse_voices("1"), text=text,
                         exclude=[str(bench)], workers=workers)
        assert [r["id"] for r in corpus.read_manifest(str(out / "manifest.jsonl"))] == ["a"]
        assert (out / "skipped.jsonl").read_text() == ""
        assert (s["skipped_texts"], s["leakage"]["texts_dropped"], s["leakage"]["texts_considered"]) == (0, 0, 1)
        assert [p.name for p in (out / "wavs").rglob("*.wav")] == ["00000000.wav"]


@needs_espeak
def test_a_batch_of_only_leaking_texts_does_not_end_the_corpus(tmp_path):
    bench = tmp_path / "bench"
    leakage.write(str(bench), "planted", sentences=["The red boat sank."])
    text = _jsonl(tmp_path / "t.jsonl", [("a", "The red boat sank."), ("b", "A fine line to speak.")])
    # one worker and a 0.5 s target take one text per batch: the first batch holds only the leaking one
    s = corpus.build(str(tmp_path / "c"), hours=0.5 / 3600, voices=engines.parse_voices("1"), text=text,
                     exclude=[str(bench)], workers=1)
    assert [r["id"] for r in corpus.read_manifest(str(tmp_path / "c" / "manifest.jsonl"))] == ["b"]
    assert s["leakage"]["texts_dropped"] == 1


def test_the_cloze_checker_reports_an_index_used_twice(tmp_path):
    for name in ("0_s1_correct.wav", "1_s1_incorrect.wav", "1_s1_correct.wav", "01_s1_incorrect.wav"):
        (tmp_path / name).write_bytes(b"")
    problems = layout.check_cloze(str(tmp_path), check_audio=False)
    assert any("index 1" in p and "1_s1_correct.wav" in p for p in problems), problems
    (tmp_path / "1_s1_correct.wav").unlink()
    (tmp_path / "01_s1_incorrect.wav").unlink()
    assert layout.check_cloze(str(tmp_path), check_audio=False) == []


@needs_espeak
def test_a_repeated_text_id_is_skipped_and_recorded_not_fatal(tmp_path):
    # found after hours of synthesis, a fatal error would leave a corpus that no rerun can finish
    text = _jsonl(tmp_path / "t.jsonl", [("a", "First line."), ("b", "Second line."), ("a", "Third line.")])
    out = tmp_path / "c"
    s = corpus.build(str(out), hours=0, voices=engines.parse_voices("1"), text=text, workers=1)
    assert [(r["id"], r["text"]) for r in corpus.read_manifest(str(out / "manifest.jsonl"))] == [
        ("a", "First line."), ("b", "Second line.")]
    (skip,) = [json.loads(line) for line in open(out / "skipped.jsonl")]
    assert (skip["id"], skip["text"]) == ("a", "Third line.") and "occurs twice" in skip["reason"]
    assert s["skipped_texts"] == 1 and len(list((out / "wavs").rglob("*.wav"))) == 2


def _sentences(sets):
    return {s for rows in sets.values() for r in rows for s in r[3:]}


def test_a_split_holds_the_same_sblimp_items_whichever_splits_a_run_writes():
    from slmjax.synth import sblimp

    both = sblimp.items(24, seed=2, splits=("dev", "test"))
    dev, test = sblimp.items(24, seed=2, splits=("dev",)), sblimp.items(24, seed=2, splits=("test",))
    # dev and test written by two separate runs must not share a sentence, as in one run
    assert not _sentences(dev) & _sentences(test)
    assert dev["dev"] == both["dev"] and test["test"] == both["test"]
    assert sblimp.items(24, seed=2, splits=("test", "dev")) == both
    with pytest.raises(SynthError, match="choose from dev,test"):
        sblimp.items(24, seed=2, splits=("train",))


@needs_espeak
def test_a_split_holds_the_same_swuggy_items_whichever_splits_a_run_writes():
    from slmjax.synth import swuggy

    both = swuggy.items(10, seed=2, splits=("dev", "test"))
    test = swuggy.items(10, seed=2, splits=("test",))
    assert test == {"test": both["test"]}
    assert not {p["word"] for p in test["test"]} & {p["word"] for p in swuggy.items(10, 2, ("dev",))["dev"]}


def test_test_only_audio_of_the_old_drawing_is_not_relabelled(tmp_path):
    from slmjax.synth import sblimp, settings

    voices = engines.parse_voices("1")
    old = {"n": 4, "seed": 0, "voices": [voices[0].spec], "splits": ["test"]}  # what such a run recorded
    settings.claim(str(tmp_path), "sblimp", old, files=[])
    (tmp_path / "syntactic" / "test").mkdir(parents=True)
    (tmp_path / "syntactic" / "test" / "AbCdEfGhIj.wav").write_bytes(b"x")
    with pytest.raises(SynthError, match="test_drawn_after_dev: '<absent>' there vs True now"):
        sblimp.build(str(tmp_path), 4, voices, seed=0, workers=1, splits=("test",))


def test_odd_voice_lists_are_one_line_errors():
    for bad, msg in ((",", "no voice"), (" , ", "no voice"), ("espeak:en-us:s170:s90", "given twice"),
                     ("espeak:en-us:p40:p60", "given twice")):
        with pytest.raises(SynthError, match=msg) as e:
            engines.parse_voices(bad)
        assert "\n" not in str(e.value)
    assert [v.spec for v in engines.parse_voices("espeak:en-us,")] == ["espeak:en-us:s175:p50"]


def test_negative_hours_or_workers_are_one_line_errors(tmp_path):
    text = _jsonl(tmp_path / "t.jsonl", [("a", "A line.")])
    voices = engines.parse_voices("1")
    with pytest.raises(SynthError, match=r"--hours=-1: must be >= 0"):
        corpus.build(str(tmp_path / "c"), hours=-1, voices=voices, text=text)
    for workers in (0, -2):
        with pytest.raises(SynthError, match=f"--workers={workers}: must be >= 1"):
            corpus.build(str(tmp_path / "c"), hours=0, voices=voices, text=text, workers=workers)
    assert not (tmp_path / "c" / "manifest.jsonl").exists()


def test_the_gold_checker_reports_a_row_with_missing_fields(tmp_path):
    (tmp_path / "gold.csv").write_text("filename,id,voice,frequency,word,phones,length,correct\n"
                                       "abc,0,v\n")
    problems = layout.check_lexical(str(tmp_path), check_audio=False)
    assert any("gold.csv:2: 3 fields, want 8" in p for p in problems), problems


def test_a_null_id_means_no_id(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": null, "text": "One."}\n{"id": null, "text": "Two."}\n')
    assert [r["id"] for r in textsrc.from_file(str(path))] == ["t-00000001", "t-00000002"]
    shard = tmp_path / "s.json"
    shard.write_text('[{"id": null, "story": "One."}, {"id": 7, "story": "Two."}]')
    assert [r["id"] for r in textsrc.from_file(str(shard))] == ["s-00000000", "7"]


def test_control_characters_are_spaces_not_a_cut_in_the_audio(tmp_path):
    # espeak-ng stops reading at a NUL: the wav would hold "A dog" while the manifest says more
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "A dog\u0000ran\u0007 home.\u001b"}) + "\n")
    (plain,) = textsrc.from_file(str(path))
    assert plain["text"] == "A dog ran home."


def test_audio_of_the_earlier_sblimp_items_is_not_relabelled(tmp_path):
    # The argument-structure foils changed ("The cat washed yesterday." is grammatical): a folder
    # made before holds wavs of the old sentences under stems the new gold.csv would reuse.
    from slmjax.synth import sblimp, settings

    voices = engines.parse_voices("1")
    old = {"n": 4, "seed": 0, "voices": [voices[0].spec], "splits": ["dev", "test"]}
    settings.claim(str(tmp_path), "sblimp", old, files=[])
    (tmp_path / "syntactic" / "dev").mkdir(parents=True)
    (tmp_path / "syntactic" / "dev" / "AbCdEfGhIj.wav").write_bytes(b"x")
    with pytest.raises(SynthError, match=f"items: '<absent>' there vs {sblimp.ITEMS_VERSION} now"):
        sblimp.build(str(tmp_path), 4, voices, seed=0, workers=1)


@pytest.mark.parametrize("name, audio", [("corpus", "wavs"), ("storycloze", "sSC"), ("swuggy", "lexical/dev")])
def test_audio_of_earlier_story_text_is_not_relabelled(tmp_path, name, audio):
    # The stories' plurals changed ("snowmans" -> "snowmen"): the corpus, StoryCloze stories and
    # sWUGGY's words of a folder made before would be kept under the new texts and labels.
    from slmjax.synth import settings, stories, storycloze, swuggy

    voices = engines.parse_voices("1")
    settings.claim(str(tmp_path), name, {"seed": 0, "voices": [voices[0].spec]}, files=[])
    (tmp_path / audio).mkdir(parents=True)
    (tmp_path / audio / "AbCdEfGhIj.wav").write_bytes(b"x")
    build = {"corpus": lambda: corpus.build(str(tmp_path), hours=1, voices=voices, seed=0, workers=1),
             "storycloze": lambda: storycloze.build(str(tmp_path), 2, voices, seed=0, workers=1),
             "swuggy": lambda: swuggy.build(str(tmp_path), 2, voices, seed=0, workers=1)}[name]
    with pytest.raises(SynthError, match=f"stories: '<absent>' there vs {stories.TEXT_VERSION} now"):
        build()


@needs_espeak
def test_swuggy_refuses_a_split_short_of_n_when_its_word_pool_runs_out(monkeypatch):
    # At the largest --n a replaced word empties its pool: the test split held fewer pairs, with
    # fewer out-of-vocabulary words than in-vocabulary ones (--n=249: 244 pairs, 119 of them OOV).
    from slmjax.synth import swuggy

    inv, oov = swuggy.vocabulary()
    monkeypatch.setattr(swuggy, "vocabulary", lambda: (inv, oov[:8]))
    monkeypatch.setattr(swuggy, "word_list_pronunciations", lambda word_list: frozenset())
    candidates = swuggy._candidates
    monkeypatch.setattr(swuggy, "_candidates", lambda w, *a: [] if w == oov[0] else candidates(w, *a))
    with pytest.raises(SynthError, match=r"swuggy: --n=8: the test split found legal non-words for [0-3] "
                                         "of its 4 out-of-vocabulary words"):
        swuggy.items(8, seed=0)


@needs_espeak
def test_swuggy_phone_cache_follows_espeak_data_not_only_its_version(tmp_path, monkeypatch):
    # A distribution update (1.51+dfsg-10+deb12u2 -> u3) may change the pronunciations while
    # `espeak-ng --version` reads the same: the cache of the old ones would still be used.
    from slmjax.synth import swuggy

    data = str(tmp_path / "espeak-ng-data")
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    shutil.copytree(version.split("Data at:")[1].strip(), data)
    monkeypatch.setenv("ESPEAK_DATA_PATH", data)
    words = tmp_path / "words"
    words.write_text("need\n")
    before = swuggy._phones_cache(str(words))
    with open(os.path.join(data, "en_dict"), "ab") as f:
        f.write(b"\0")
    assert swuggy._phones_cache(str(words)) != before


@needs_espeak
def test_a_lone_surrogate_in_a_json_text_is_dropped_not_a_crash_of_the_run(tmp_path):
    # JSON may escape half an emoji ("\ud83d"): the engine could not encode such a text and the whole
    # corpus run stopped with a UnicodeEncodeError
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "The dog ran home."}\n{"text": "A cut emoji \\ud83d here \\ud83d\\ude00."}\n')
    assert [r["text"] for r in textsrc.from_file(str(path))] == ["The dog ran home.",
                                                                   "A cut emoji here \U0001f600."]
    summary = corpus.build(str(tmp_path / "c"), 0, engines.parse_voices("1"), text=str(path), workers=1)
    assert summary["utterances"] == 2 and summary["skipped_texts"] == 0
    rows = corpus.read_manifest(str(tmp_path / "c" / "manifest.jsonl"))
    assert [r["text"] for r in rows] == ["The dog ran home.", "A cut emoji here \U0001f600."]


def test_a_plain_text_file_may_open_with_a_bracket_or_a_brace(tmp_path):
    # a .txt whose first story opened with "[" or "{" was read as JSON and refused
    for opening in ("[Illustration] The dog ran home.", "{Chapter one} The dog ran home."):
        path = tmp_path / "book.txt"
        path.write_text(f"{opening}\n\nThe cat slept.\n")
        assert [r["text"] for r in textsrc.from_file(str(path))] == [opening, "The cat slept."]
    named = tmp_path / "bad.json"
    named.write_text("[Illustration] The dog ran home.\n")
    with pytest.raises(SynthError, match="not valid JSON"):
        list(textsrc.from_file(str(named)))


def test_endless_hours_are_one_line_errors(tmp_path):
    # --hours=nan passed the ">= 0" check and never reached its target: the corpus grew without end
    voices = engines.parse_voices("1")
    for hours in (float("nan"), float("inf")):
        with pytest.raises(SynthError, match=rf"--hours={hours}: must be >= 0 and finite"):
            # max_utterances: where the check is missing, the test fails after two files, not never
            corpus.build(str(tmp_path / "c"), hours=hours, voices=voices, workers=1, max_utterances=2)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("argv", [["corpus", "--hours=0.0005"], ["swuggy", "--n=1"], ["bench", "--n=1"]])
def test_an_out_that_is_a_file_is_one_line_without_a_traceback(tmp_path, argv):
    import sys

    out = tmp_path / "taken"
    out.write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "slmjax.synth.cli", *argv, f"--out={out}", "--voices=1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == \
        f"slmjax-synth {argv[0]}: error: --out={out} exists and is not a directory"
    assert out.read_text() == "not a folder"


def test_a_folder_that_cannot_be_made_is_one_line_without_a_traceback(tmp_path):
    import sys

    out = tmp_path / "c"
    out.mkdir()
    (out / "wavs").write_text("a file where the wav folder goes")
    proc = subprocess.run([sys.executable, "-m", "slmjax.synth.cli", "corpus", f"--out={out}",
                           "--hours=0.0005", "--voices=1", "--workers=1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"slmjax-synth corpus: error: Not a directory: {out}/wavs/" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("flag", ["--n=-1", "--count=-5"])
def test_stories_with_a_negative_count_is_one_line(flag):
    """stories --n=-1 printed nothing and exited 0, --count=-5 was ignored."""
    import sys

    proc = subprocess.run([sys.executable, "-m", "slmjax.synth.cli", "stories", flag],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == \
        f"slmjax-synth stories: error: {flag}: must be >= 0 (stories to print / to count)"
    assert not proc.stdout.strip()


def test_a_killed_storycloze_run_leaves_no_short_set_to_score(tmp_path, monkeypatch):
    """The wavs went straight into sSC/ and tSC/: a run killed after 2 of 10 pairs left an sSC/ that
    `slmjax-synth check` and slmjax-eval took for the set (2 pairs). Now each set is rendered under
    a hidden name and renamed whole; the contexts to exclude are written before any audio."""
    from slmjax.synth import benchio, storycloze

    state = {"kill_after": 4, "written": 0}

    def render(folder, rows, texts, voices, workers, desc):   # a stand-in engine: 1-byte wavs
        os.makedirs(folder, exist_ok=True)
        for r in rows:
            path = os.path.join(folder, r["filename"] + ".wav")
            if os.path.exists(path):
                continue
            if state["written"] == state["kill_after"]:
                raise KeyboardInterrupt   # killed after 4 wavs: 2 of sSC's 10 pairs
            with open(path, "wb") as f:
                f.write(b"\0")
            state["written"] += 1

    monkeypatch.setattr(benchio, "render_rows", render)
    voices = engines.parse_voices("1")
    root = tmp_path / "bench"
    with pytest.raises(KeyboardInterrupt):
        storycloze.build(str(root), 10, voices)
    assert not (root / "sSC").exists() and not (root / "tSC").exists()
    assert len(os.listdir(root / ".sSC.partial")) == 4
    assert len((root / "exclude" / "storycloze.txt").read_text().split()) == 20   # 10 contexts
    # the hidden folder's wavs are the settings' too: another seed is refused, not mixed in
    with pytest.raises(SynthError, match="holds storycloze audio made with other settings"):
        storycloze.build(str(root), 10, voices, seed=2)
    state["kill_after"] = None
    assert storycloze.build(str(root), 10, voices) == {"sSC": 10, "tSC": 10}
    assert state["written"] == 40   # the 4 of the killed run kept, not made again
    assert len(os.listdir(root / "sSC")) == len(os.listdir(root / "tSC")) == 20
    assert not (root / ".sSC.partial").exists() and not (root / ".tSC.partial").exists()
    # an sSC/ an older slmjax rendered in place and a kill cut short (no meta CSV): resumed
    os.remove(root / "meta" / "sSC.csv")
    os.remove(root / "sSC" / sorted(os.listdir(root / "sSC"))[-1])
    assert storycloze.build(str(root), 10, voices) == {"sSC": 10, "tSC": 10}
    assert state["written"] == 41 and len(os.listdir(root / "sSC")) == 20
    assert (root / "meta" / "sSC.csv").is_file()
