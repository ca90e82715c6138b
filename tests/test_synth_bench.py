"""Benchmark roots: official layouts (BENCHMARKS.md) checked row by row, pairs, resumability, validator."""

import csv
import glob
import os
import re
import shutil

import pytest
import soundfile as sf

from slmjax.synth import engines, layout, leakage, sblimp, storycloze, swuggy

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

# Column lists copied from BENCHMARKS.md (not from the code under test).
LEXICAL = ["filename", "id", "voice", "frequency", "word", "phones", "length", "correct"]
SYNTACTIC = ["filename", "type", "subtype", "id", "voice", "transcription", "correct"]
N = 12
N_SC = 6  # storycloze pairs: whole stories, the longest files


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bench"))
    voices = engines.parse_voices("2")
    sblimp.build(root, N, voices, seed=3, workers=2)
    swuggy.build(root, N, voices, seed=3, workers=2)
    storycloze.build(root, N_SC, voices, seed=3, workers=2)
    return root


def _gold(folder):
    with open(os.path.join(folder, "gold.csv"), newline="") as f:
        r = csv.reader(f)
        header = next(r)
        return header, [dict(zip(header, row)) for row in r]


def _assert_rows_have_wavs(folder, rows):
    stems = {r["filename"] for r in rows}
    assert stems == {os.path.basename(p)[:-4] for p in glob.glob(os.path.join(folder, "*.wav"))}
    for s in stems:
        assert re.fullmatch(r"[A-Za-z0-9]{10}", s)  # opaque: no label, word or type in the name
        info = sf.info(os.path.join(folder, s + ".wav"))
        assert (info.samplerate, info.channels) == (16000, 1) and info.frames > 1600


def test_syntactic_layout_and_pairs(root):
    all_sentences = set()
    for split in ("dev", "test"):
        folder = os.path.join(root, "syntactic", split)
        header, rows = _gold(folder)
        assert header == SYNTACTIC
        assert len(rows) == N * 2 * 2  # N pairs x 2 voices x (good, bad)
        _assert_rows_have_wavs(folder, rows)
        assert {r["type"] for r in rows} == set(sblimp.TYPES)  # all 12 types when N >= 12
        pairs = {}
        for r in rows:
            pairs.setdefault((r["type"], r["subtype"], r["id"], r["voice"]), {})[r["correct"]] = r["transcription"]
        assert len(pairs) == N * 2 and all(set(p) == {"0", "1"} for p in pairs.values())
        for good, bad in ((p["1"], p["0"]) for p in pairs.values()):
            assert good != bad and abs(len(good.split()) - len(bad.split())) <= 1
        goods = [k for k in (tuple(r[c] for c in SYNTACTIC[1:5]) for r in rows if r["correct"] == "1")]
        bads = [k for k in (tuple(r[c] for c in SYNTACTIC[1:5]) for r in rows if r["correct"] == "0")]
        assert goods == bads  # the official positional pairing agrees with the keys
        sentences = {r["transcription"] for r in rows}
        assert not sentences & all_sentences  # dev and test share no sentence
        all_sentences |= sentences


def test_lexical_layout_words_and_nonwords(root):
    dictionary = swuggy.system_words()[0]
    for split in ("dev", "test"):
        folder = os.path.join(root, "lexical", split)
        header, rows = _gold(folder)
        assert header == LEXICAL
        _assert_rows_have_wavs(folder, rows)
        by_key = {}
        for r in rows:
            assert int(r["length"]) == len(r["phones"].split())
            by_key.setdefault((r["id"], r["voice"]), {})[r["correct"]] = r
        assert all(set(p) == {"0", "1"} for p in by_key.values())
        ids = {k[0] for k in by_key}
        assert len(ids) == N  # a word without a legal non-word is replaced by another
        freqs = []
        for p in by_key.values():
            w, nw = p["1"], p["0"]
            assert w["length"] == nw["length"] and w["phones"] != nw["phones"]
            assert w["frequency"] == nw["frequency"] and w["word"] and not nw["word"]
            freqs.append(int(w["frequency"]))
        assert sum(f > 0 for f in freqs) >= len(freqs) // 2 - 2 and sum(f == 0 for f in freqs) >= 2


def test_nonwords_are_not_words():
    dictionary = swuggy.system_words()[0] | set(swuggy.vocabulary()[0])
    heard = swuggy.word_list_pronunciations(swuggy.system_words()[1])  # spoken, "nead" is "need"
    pairs = swuggy.items(20, seed=9, splits=("dev",))["dev"]
    assert len(pairs) >= 18
    for p in pairs:
        assert p["nonword"] not in dictionary and len(p["nonword_phones"]) == len(p["phones"])
        assert p["nonword_phones"] not in heard


def test_storycloze_naming_and_foils(root):
    stems = {}
    for name in ("sSC", "tSC"):
        folder = os.path.join(root, name)
        files = sorted(os.listdir(folder), key=lambda f: int(f.split("_")[0]))
        assert len(files) == 2 * N_SC
        for i in range(N_SC):
            a, b = files[2 * i].split("_"), files[2 * i + 1].split("_")
            assert (a[0], a[2], b[0], b[2]) == (str(2 * i), "correct.wav", str(2 * i + 1), "incorrect.wav")
            assert a[1] == b[1]
        stems[name] = files
        with open(os.path.join(root, "meta", f"{name}.csv"), newline="") as f:
            meta = list(csv.DictReader(f))
        assert [m["file"] for m in meta] == files
        assert len({m["voice"] for m in meta}) == 2
        for good, bad in zip(meta[::2], meta[1::2]):
            g, b = leakage.split_sentences(good["text"]), leakage.split_sentences(bad["text"])
            assert len(g) == len(b) == 5 and g[:4] == b[:4] and g[4] != b[4]
    assert stems["sSC"] == stems["tSC"]  # same stories, same ids


def test_the_layout_checker_accepts_ours_and_catches_defects(root, tmp_path):
    found, problems = layout.check(root)
    assert problems == [] and set(found) == {"lexical/dev", "lexical/test", "syntactic/dev", "syntactic/test",
                                             "sSC", "tSC"}
    broken = str(tmp_path / "broken")
    shutil.copytree(root, broken)
    os.remove(glob.glob(os.path.join(broken, "syntactic", "dev", "*.wav"))[0])
    gold = os.path.join(broken, "lexical", "test", "gold.csv")
    lines = open(gold).read().splitlines()
    lines[1] = lines[1][:-1] + ("0" if lines[1].endswith("1") else "1")
    open(gold, "w").write("\n".join(lines) + "\n")
    os.rename(glob.glob(os.path.join(broken, "tSC", "1_*"))[0], os.path.join(broken, "tSC", "1_x_incorrect.wav"))
    _, problems = layout.check(broken)
    text = "\n".join(problems)
    assert "syntactic/dev: 1 gold rows without a wav" in text
    assert "lexical/test/gold.csv: 1 pair keys" in text
    assert "files 0 and 1 are not a correct/incorrect pair" in text


def test_a_rerun_skips_existing_files_and_writes_the_same_gold(root):
    gold = os.path.join(root, "syntactic", "dev", "gold.csv")
    before = open(gold).read()
    wav = sorted(glob.glob(os.path.join(root, "syntactic", "dev", "*.wav")))[0]
    mtime = os.stat(wav).st_mtime_ns
    sblimp.build(root, N, engines.parse_voices("2"), seed=3, workers=1)
    assert open(gold).read() == before and os.stat(wav).st_mtime_ns == mtime


def test_exclusion_hashes_cover_every_benchmark_text(root):
    ex = leakage.load([root])
    _, rows = _gold(os.path.join(root, "syntactic", "test"))
    assert all(ex.leaks(r["transcription"]) for r in rows)
    with open(os.path.join(root, "meta", "sSC.csv"), newline="") as f:
        for m in csv.DictReader(f):
            assert ex.leaks(m["text"])
            assert ex.leaks("Once upon a time. " + m["text"] + " The end.")  # a context inside a longer text
    assert not ex.leaks("The cat sat on the mat. It was warm.")


def test_the_evaluation_validator_accepts_our_root(root):
    benchmarks = pytest.importorskip("slmjax.analysis.zeroshot.benchmarks")
    assert benchmarks.validate(root) == []
    pairs = {(b.task, b.split): len(b.pairs) for b in benchmarks.discover(root)}
    assert len(pairs) == 6, pairs
    for (task, _), n in pairs.items():  # pairs are (item, voice): 2 voices; storycloze: one voice per story
        assert n == {"sblimp": 2 * N, "swuggy": 2 * N, "ssc": N_SC, "tsc": N_SC}[task], (task, n)


# Verbs with a common intransitive use ("The cat washed.", "The price dropped.", "He painted all
# day."): as the foil of an intransitive pair they would make the "ungrammatical" side grammatical.
ALTERNATING = {"washed", "painted", "dropped", "kept", "carried", "moved", "opened", "broke", "cooked",
               "read", "ate", "drew", "sang", "played", "wrote", "cleaned", "rolled", "turned", "closed",
               "changed", "burned", "melted", "drove", "flew", "walked", "left", "returned"}


def test_intransitive_foils_have_no_intransitive_use():
    sets = sblimp.items(400, seed=3)
    foils = [bad for rows in sets.values() for typ, sub, _, _, bad in rows
                      if typ == "argument_structure" and sub == "intransitive"]
    assert len(foils) > 20
    verbs = {bad.rstrip(".").split()[2] for bad in foils}
    assert not verbs & ALTERNATING, sorted(verbs & ALTERNATING)
