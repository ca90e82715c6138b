"""Benchmarks -> units (cached) -> scores -> scores.json and submission files, with a bigram model
whose likelihood is known in closed form; the validator; tokenizer mismatches refused."""

import json
import os
import shutil
import time

import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

from slmjax.analysis.zeroshot import benchmarks as bm
from slmjax.analysis.zeroshot.errors import ZeroShotError
from slmjax.analysis.zeroshot.evaluate import evaluate_model
from slmjax.analysis.zeroshot.scoring import Scorer
from slmjax.analysis.zeroshot.units_cache import encode_benchmark
from zeroshot_fixtures import (K, FakeTokenizer, make_lexical, make_storycloze, make_syntactic,
                               write_gold, write_units_wav, LEX_COLS)

V = K + 2
EOS, PAD = K, K + 1


def _table():
    """Bigram log-probs in closed form: p(next | prev) ∝ 2^(next == prev + 1) (rising runs are
    likely), so a file's mean log-prob is determined by how many of its steps rise by one."""
    t = np.zeros((V, V))
    for a in range(V):
        for b in range(V):
            t[a, b] = np.log(2.0) if b == (a + 1) % V else 0.0
    return t


def _mean_logprob(units):
    t = _table()
    logp = t - np.log(np.exp(t).sum(1, keepdims=True))
    seq = [EOS, *units]
    return np.mean([logp[a, b] for a, b in zip(seq[:-1], seq[1:])])


RISING, FLAT = [1, 2, 3, 4, 5], [1, 3, 5, 7, 9]


def _build(root):
    # sWUGGY: item "a" wins in both voices, item "b" ties in v1 (same units) and loses in v2.
    def lex_units(item, voice, correct):
        if item == "a":
            return RISING if correct else FLAT
        if voice == "v1":
            return FLAT
        return FLAT if correct else RISING
    make_lexical(root / "lexical" / "dev", [("a", 10, "v1"), ("a", 10, "v2"),
                                             ("b", 0, "v1"), ("b", 0, "v2")],
                 shuffle_seed=5, units_of=lex_units)

    def syn_units(key, voice, correct):
        return (RISING if correct else FLAT) if key[0] == "binding" else (
            FLAT if correct else RISING)
    make_syntactic(root / "syntactic" / "dev",
                   [("binding", "x", "1", "v1"), ("binding", "x", "2", "v1"),
                    ("quantifiers", "y", "1", "v1")], units_of=syn_units)
    make_storycloze(root / "sSC", 3, units_of=lambda i, c: RISING if (c ^ (i == 2)) else FLAT)


def _bigram_scorer():
    return Scorer(lambda p, x, pos, seg: p[x], jnp.asarray(_table(), jnp.float32), max_len=32,
                  pad_id=PAD, progress=False)


def _encode(benches, tmp_path, tok):
    return {b.name: encode_benchmark(b, tok, tmp_path / "cache", progress=False) for b in benches}


def _score(root, tmp_path, tok=None):
    tok = tok or FakeTokenizer()
    benches = bm.discover(root)
    out = tmp_path / "run" / "zeroshot" / "7"
    scores = evaluate_model(_bigram_scorer(), benches, _encode(benches, tmp_path, tok), EOS, out,
                            {"step": 7})
    return scores, out, tok


def test_end_to_end_closed_form(tmp_path):
    root = tmp_path / "bench"
    _build(root)
    scores, out, tok = _score(root, tmp_path)
    assert set(scores["tasks"]) == {"swuggy_dev", "sblimp_dev", "ssc"}
    sw = {r["metric"]: r for r in scores["tasks"]["swuggy_dev"]["conventions"]["mean"]}
    assert sw["all"]["accuracy"] == pytest.approx((1.0 + 0.25) / 2)     # a: 1, b: (0.5 + 0) / 2
    assert sw["in_vocab"]["accuracy"] == pytest.approx(1.0)
    assert sw["all"]["tie_rate"] == pytest.approx(0.25)
    sb = {r["metric"]: r for r in scores["tasks"]["sblimp_dev"]["conventions"]["mean"]}
    assert sb["item"]["accuracy"] == pytest.approx(2 / 3)
    assert sb["macro"]["accuracy"] == pytest.approx(0.5)
    (sc,) = scores["tasks"]["ssc"]["conventions"]["sum"]
    assert sc["accuracy"] == pytest.approx(2 / 3) and sc["n_items"] == 3
    assert scores["headline"]["sblimp"]["accuracy"] == pytest.approx(0.5)
    assert scores["headline"]["sblimp_item"]["accuracy"] == pytest.approx(2 / 3)
    # submission files: every stem once, "<stem> <score>", scores equal the closed form
    lines = (out / "mean" / "lexical" / "dev.txt").read_text().splitlines()
    assert len(lines) == 8 and len({ln.split()[0] for ln in lines}) == 8
    bench = next(b for b in bm.discover(root) if b.task == "swuggy")
    for ln in lines:
        stem, value = ln.split(" ")
        units = tok.encode_file(bench.files[stem])
        assert float(value) == pytest.approx(_mean_logprob(units), rel=1e-6)
    for conv in ("mean", "sum", "mean_eos"):
        assert (out / conv / "syntactic" / "dev.txt").is_file()
        assert (out / conv / "sSC.txt").is_file()
    tsv = (out / "per_file" / "ssc.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == ["stem", "n_units", "sum_logprob", "eos_logprob", "truncated",
                                  "file_units"]
    ssc = next(b for b in bm.discover(root) if b.task == "ssc")
    for row in (ln.split("\t") for ln in tsv[1:]):   # none cut: every unit scored
        assert int(row[1]) == int(row[5]) == len(tok.encode_file(ssc.files[row[0]])) and row[4] == "0"
    # items/: every item's outcome, by hand (a wins twice; b ties in v1 and loses in v2)
    lex = [ln.split("\t") for ln in (out / "items" / "swuggy_dev.tsv").read_text().splitlines()]
    assert lex[0] == ["item", "type", "frequency", "n_pairs", "mean", "sum", "mean_eos"]
    assert sorted(r[:5] for r in lex[1:]) == [['["a"]', "", "10", "2", "1.0"],
                                              ['["b"]', "", "0", "2", "0.25"]]
    syn = (out / "items" / "sblimp_dev.tsv").read_text().splitlines()[1:]
    assert sorted(ln.split("\t")[:5] for ln in syn) == [
        ['["binding", "x", "1"]', "binding", "", "1", "1.0"],
        ['["binding", "x", "2"]', "binding", "", "1", "1.0"],
        ['["quantifiers", "y", "1"]', "quantifiers", "", "1", "0.0"]]
    ssc = [ln.split("\t") for ln in (out / "items" / "ssc.tsv").read_text().splitlines()[1:]]
    assert [r[4] for r in sorted(ssc)] == ["1.0", "1.0", "0.0"]   # the third story fails
    on_disk = json.loads((out / "scores.json").read_text())
    assert on_disk["headline"] == json.loads(json.dumps(scores["headline"]))
    for row in on_disk["tasks"]["sblimp_dev"]["conventions"]["mean_eos"]:
        assert {"metric", "n_items", "accuracy", "ci95", "tie_rate"} <= set(row)


def test_units_cache_reused_and_mismatch_refused(tmp_path):
    root = tmp_path / "bench"
    make_storycloze(root / "tSC", 4)
    (bench,) = bm.discover(root)
    tok = FakeTokenizer()
    units, skipped = encode_benchmark(bench, tok, tmp_path / "c", progress=False)
    assert tok.calls == 8 and not skipped and len(units) == 8
    units2, _ = encode_benchmark(bench, tok, tmp_path / "c", progress=False)
    assert tok.calls == 8   # nothing re-encoded
    assert all(np.array_equal(units[s], units2[s]) for s in units)
    # a cache made by another tokenizer, read as this one's: refused with a clear message
    other = FakeTokenizer("other")
    encode_benchmark(bench, other, tmp_path / "c2", progress=False)
    import shutil
    from slmjax.analysis.zeroshot.units_cache import cache_path
    src = cache_path(tmp_path / "c2", bench, other.identity)
    dst = cache_path(tmp_path / "c3", bench, tok.identity)
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    with pytest.raises(ZeroShotError, match="made by tokenizer"):
        encode_benchmark(bench, tok, tmp_path / "c3", progress=False)


def test_units_cache_that_cannot_be_written_is_one_clear_error(tmp_path):
    """--units_cache naming a file ended in a NotADirectoryError traceback, before any file was
    encoded."""
    make_storycloze(tmp_path / "bench" / "tSC", 1)
    (bench,) = bm.discover(tmp_path / "bench")
    (tmp_path / "afile").write_text("")
    tok = FakeTokenizer()
    with pytest.raises(ZeroShotError) as e:
        encode_benchmark(bench, tok, tmp_path / "afile", progress=False)
    assert str(e.value).startswith(f"units cache {tmp_path / 'afile'} cannot be written (")
    assert str(e.value).endswith("); pass --units_cache=DIR, a folder slmjax-eval can write")
    assert tok.calls == 0


def test_default_units_cache_beside_the_benchmarks_else_in_slmjax_cache(tmp_path, monkeypatch):
    """The cache goes beside the benchmarks when that folder can be written, else under
    $SLMJAX_CACHE (it went to ~/.cache whatever $SLMJAX_CACHE said)."""
    from slmjax.analysis.zeroshot.units_cache import default_cache_dir
    monkeypatch.setenv("SLMJAX_CACHE", str(tmp_path / "cache"))
    (tmp_path / "bench").mkdir()
    assert default_cache_dir(tmp_path / "bench") == tmp_path / "bench" / ".slmjax_units"
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / ".slmjax_units").write_text("")  # a file where the folder would go
    assert default_cache_dir(tmp_path / "blocked") == tmp_path / "cache" / "units"


def test_units_cache_sees_changed_content(tmp_path):
    root = tmp_path / "bench"
    make_storycloze(root / "tSC", 4)
    (bench,) = bm.discover(root)
    tok = FakeTokenizer()
    encode_benchmark(bench, tok, tmp_path / "c", progress=False)
    assert tok.calls == 8
    # Same size, other units: an overwrite (its mtime moves on) and one whose old mtime is put
    # back, as cp -p / rsync -t do (only its ctime tells).
    a, b = bench.files["0_story000_correct"], bench.files["3_story001_incorrect"]
    before = os.stat(a)
    write_units_wav(a, [4, 5, 6])
    os.utime(a, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    before = os.stat(b)
    time.sleep(0.05)   # past the kernel's coarse timestamp tick
    write_units_wav(b, [7, 8, 9])
    os.utime(b, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.path.getsize(a) == os.path.getsize(b) == before.st_size
    units, _ = encode_benchmark(bench, tok, tmp_path / "c", progress=False)
    assert tok.calls == 10   # only the two changed files
    assert units["0_story000_correct"].tolist() == [4, 5, 6]
    assert units["3_story001_incorrect"].tolist() == [7, 8, 9]
    assert units["1_story000_incorrect"].tolist() == [1, 2, 3]


def test_units_cache_truncated_is_rebuilt(tmp_path, caplog):
    from slmjax.analysis.zeroshot.units_cache import cache_path
    root = tmp_path / "bench"
    make_storycloze(root / "tSC", 2)
    (bench,) = bm.discover(root)
    tok = FakeTokenizer()
    encode_benchmark(bench, tok, tmp_path / "c", progress=False)
    path = cache_path(tmp_path / "c", bench, tok.identity)
    path.write_bytes(path.read_bytes()[:200])
    units, skipped = encode_benchmark(bench, tok, tmp_path / "c", progress=False)
    assert tok.calls == 8 and not skipped
    assert all(u.tolist() == [1, 2, 3] for u in units.values()) and len(units) == 4
    assert any(f"units cache {path} cannot be read" in r.getMessage() for r in caplog.records)
    encode_benchmark(bench, tok, tmp_path / "c", progress=False)
    assert tok.calls == 8    # the rebuilt cache is read


def test_set_with_every_file_skipped_is_null_and_named(tmp_path, caplog):
    root = tmp_path / "bench"
    _build(root)
    for wav in (root / "syntactic" / "dev").glob("*.wav"):
        write_units_wav(wav, [])   # no samples: no units
    _, out, _ = _score(root, tmp_path)
    text = (out / "scores.json").read_text()
    scores = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in scores.json"))
    entry = scores["tasks"]["sblimp_dev"]
    assert (entry["n_files"], len(entry["skipped_files"]), entry["n_pairs"],
            entry["n_pairs_dropped"]) == (0, 6, 0, 3)
    for rows in entry["conventions"].values():
        for row in rows:
            assert (row["n_items"], row["accuracy"], row["ci95"], row["tie_rate"]) == (
                0, None, None, None)
    assert "sblimp" not in scores["headline"] and "sblimp_item" not in scores["headline"]
    assert scores["headline"]["swuggy"]["accuracy"] == pytest.approx((1.0 + 0.25) / 2)
    assert [r.getMessage() for r in caplog.records if "sblimp_dev" in r.getMessage()] == [
        "sblimp_dev: 6 of 6 files skipped (unreadable, empty, silent or no units), no pair left: "
        f"no score; each one and why: tasks.sblimp_dev.skipped_files in {out / 'scores.json'}"]


def test_corrupt_audio_skipped_and_recorded(tmp_path):
    root = tmp_path / "bench"
    make_storycloze(root / "sSC", 3)
    (root / "sSC" / "2_story001_correct.wav").write_bytes(b"not audio")
    (bench,) = bm.discover(root)
    scores, _, _ = _score(root, tmp_path)
    entry = scores["tasks"]["ssc"]
    assert "2_story001_correct" in entry["skipped_files"]
    assert entry["n_pairs"] == 2 and entry["n_pairs_dropped"] == 1


def test_validator_names_every_problem(tmp_path):
    root = tmp_path / "bench"
    make_lexical(root / "lexical" / "dev", [("1", 5, "v1"), ("2", 5, "v1"), ("3", 0, "v1")])
    (root / "lexical" / "dev" / "f0000.wav").unlink()                 # missing wav
    gold = (root / "lexical" / "dev" / "gold.csv").read_text().splitlines()
    gold = [ln for ln in gold if not ln.startswith("f0003,")]         # unpaired item 2
    gold.append(gold[-1])                                              # duplicate stem
    (root / "lexical" / "dev" / "gold.csv").write_text("\n".join(gold) + "\n")
    write_gold(root / "lexical" / "test" / "gold.csv", LEX_COLS[:-1], [["x", 1, "v", 0, "", "", 1]])
    make_syntactic(root / "syntactic" / "dev", [("binding", "a", "1", "v1")])
    (root / "syntactic" / "dev" / "s0000.flac").write_bytes(b"")       # duplicate stem on disk
    make_storycloze(root / "tSC", 2)
    (root / "tSC" / "3_story001_incorrect.wav").unlink()              # unpaired SC item
    write_units_wav(root / "tSC" / "oops.wav", [1])                    # bad SC name
    (root / "tSC" / "0_story000_correct.wav").write_bytes(b"RIFFjunk")  # unreadable
    problems = bm.validate(root)
    text = "\n".join(map(str, problems))
    assert "missing wav for 'f0000'" in text
    assert "unpaired item ('2', 'v1')" in text
    assert "duplicate stem 'f0005'" in text
    assert "bad columns: missing ['correct']" in text
    assert "duplicate stem 's0000'" in text
    assert "unpaired item: no incorrect file 3_story001_incorrect" in text
    assert "oops.wav: file name is not" in text
    assert "unreadable audio" in text
    make_syntactic(root / "syntactic" / "test", [("made_up_type", "a", "1", "v1")])
    assert "types outside the 12 of sBLIMP: ['made_up_type']" in "\n".join(map(str, bm.validate(root)))
    assert all(p.severity in ("error", "warning") for p in problems)


def test_validator_names_files_eval_would_skip(tmp_path):
    folder = tmp_path / "bench" / "sSC"
    make_storycloze(folder, 3)
    write_units_wav(folder / "0_story000_correct.wav", [])
    soundfile.write(str(folder / "3_story001_incorrect.wav"), np.zeros(800, np.float32), 16000)
    soundfile.write(str(folder / "4_story002_correct.wav"), np.full(64, np.nan, np.float32), 16000,
                    subtype="FLOAT")
    # under one 25 ms feature frame (400 samples at 16 kHz): encoding skips it as too short
    soundfile.write(str(folder / "5_story002_incorrect.wav"), np.full(320, 0.3, np.float32), 16000)
    soundfile.write(str(folder / "1_story000_incorrect.wav"), np.full(199, 0.3, np.float32), 8000)
    soundfile.write(str(folder / "2_story001_correct.wav"), np.full(4000, 0.3, np.float32), 16000)
    whole = (folder / "2_story001_correct.wav").read_bytes()   # cut off in a copy
    (folder / "2_story001_correct.wav").write_bytes(whole[:2044])
    skip = ": slmjax-eval skips the file and drops its pair"
    assert [str(p) for p in bm.validate(tmp_path / "bench")] == [
        f"error: {folder / '0_story000_correct.wav'}: empty: no samples{skip}",
        f"error: {folder / '1_story000_incorrect.wav'}: too short: 199 samples < 200{skip}",
        f"warning: {folder / '1_story000_incorrect.wav'}: 8000 Hz, 1 channel(s): resampled to 16 kHz mono",
        f"error: {folder / '2_story001_correct.wav'}: truncated: the header declares 8000 bytes of "
        f"audio, the file holds 2000{skip}",
        f"error: {folder / '3_story001_incorrect.wav'}: silent: peak amplitude below 0.0001{skip}",
        f"error: {folder / '4_story002_correct.wav'}: non-finite: NaN or Inf samples{skip}",
        f"error: {folder / '5_story002_incorrect.wav'}: too short: 320 samples < 400{skip}"]
    # the same files as slmjax-eval's tokenizer reads them: each one it refuses, none it takes
    from slmjax.units.features import MfccFeatures
    from slmjax.units.tokenizer import Tokenizer
    from slmjax.units.errors import UnitsError
    tok = Tokenizer(MfccFeatures(), np.zeros((4, 39), np.float32))
    for name, why in (("1_story000_incorrect", "too short"), ("5_story002_incorrect", "too short"),
                      ("2_story001_correct", "truncated")):
        with pytest.raises(UnitsError, match=why):
            tok.encode_file(str(folder / f"{name}.wav"))
    soundfile.write(str(folder / "5_story002_incorrect.wav"), np.full(400, 0.3, np.float32), 16000)
    assert len(tok.encode_file(str(folder / "5_story002_incorrect.wav"))) == 1


def test_gold_not_utf8_and_storycloze_index_clash_are_problems(tmp_path):
    root = tmp_path / "bench"
    make_lexical(root / "lexical" / "dev", [("1", 3, "v1"), ("2", 3, "v1")])
    gold = root / "lexical" / "dev" / "gold.csv"
    gold.write_bytes(gold.read_bytes().replace(b"w2", b"w\xe92"))    # Latin-1, on line 4
    make_storycloze(root / "sSC", 2)
    write_units_wav(root / "sSC" / "00_st9_correct.wav", [1])         # index 0 again
    benches = {b.name: b for b in bm.discover(root)}
    assert [str(p) for p in benches["swuggy_dev"].problems] == [
        f"error: {gold}:4: not UTF-8 text (byte 0xe9); save gold.csv as UTF-8"]
    assert not benches["swuggy_dev"].pairs
    ssc = benches["ssc"]
    assert [p.pos for p in ssc.pairs] == ["2_story001_correct"]
    assert [str(p) for p in ssc.problems] == [
        f"error: {root / 'sSC'}: 2 correct files with index 0: ['00_st9_correct', "
        "'0_story000_correct'] (none used)",
        f"error: {root / 'sSC' / '1_story000_incorrect'}: unpaired item: no matching correct file"]


def test_no_benchmarks_is_one_clear_error(tmp_path):
    with pytest.raises(ZeroShotError, match="no benchmark set found"):
        bm.discover(tmp_path)


def test_tasks_naming_no_set_is_one_clear_error(tmp_path):
    """--tasks=ssc,storycloze scored sSC alone, silently; --tasks=swugy said no benchmark was
    found at all."""
    make_storycloze(tmp_path / "sSC", 1)
    make_lexical(tmp_path / "lexical" / "dev", [("1", 3, "v1")])
    assert [b.name for b in bm.discover(tmp_path, ["ssc", "swuggy_dev"])] == ["swuggy_dev", "ssc"]
    for tasks, unknown in ((["ssc", "storycloze"], "['storycloze']"), (["swugy"], "['swugy']")):
        with pytest.raises(ZeroShotError) as e:
            bm.discover(tmp_path, tasks)
        assert str(e.value) == (f"tasks {unknown} name no benchmark set under {tmp_path}; it "
                                "holds swuggy_dev (task swuggy), ssc (task ssc)")


def _copy_wavs_without_gold(src, dst):
    dst.mkdir(parents=True)
    for wav in src.glob("*.wav"):
        shutil.copy(wav, dst / wav.name)


def test_split_without_gold_is_scored_for_submission_only(tmp_path, caplog):
    dev_only = tmp_path / "dev_only"
    _build(dev_only)
    reference, _, _ = _score(dev_only, tmp_path / "ref")
    root = tmp_path / "bench"
    shutil.copytree(dev_only, root)
    for folder in ("lexical", "syntactic"):   # the public test download: wavs, no gold.csv
        _copy_wavs_without_gold(root / folder / "dev", root / folder / "test")
    tests = {str(root / folder / "test") for folder in ("lexical", "syntactic")}
    problems = [p for p in bm.validate(root) if p.where in tests]
    assert [p.severity for p in problems] == ["note", "note"]
    assert not [p for p in bm.validate(root) if p.severity == "error"]
    assert str(problems[0]) == (f"note: {root / 'lexical' / 'test'}: no gold.csv (as in the public "
                                "test download): submission only, its 8 files scored for "
                                "lexical/test.txt, no accuracy")
    write_units_wav(root / "syntactic" / "test" / "s0099.wav", [])   # no units: skipped
    scores, out, tok = _score(root, tmp_path)
    def placeless(tasks):   # the same sets in another folder (copied files: other stamps)
        return {n: {k: v for k, v in t.items() if k not in ("directory", "fingerprint", "problems")}
                for n, t in tasks.items()}
    assert placeless(scores["tasks"]) == placeless(reference["tasks"])
    assert scores["headline"] == reference["headline"]
    sub = scores["submission_only"]
    assert set(sub) == {"swuggy_test", "sblimp_test"}
    assert {k: sub["sblimp_test"][k] for k in ("task", "split", "directory", "n_files", "n_skipped")
            } == {"task": "sblimp", "split": "test", "n_files": 6, "n_skipped": 1,
                  "directory": str((root / "syntactic" / "test").resolve())}
    assert "conventions" not in sub["sblimp_test"] and "n_pairs" not in sub["sblimp_test"]
    assert list(sub["sblimp_test"]["skipped_files"]) == ["s0099"]
    assert json.loads((out / "scores.json").read_text())["submission_only"] == sub
    for conv in ("mean", "sum", "mean_eos"):
        for folder, n in (("lexical", 8), ("syntactic", 6)):
            dev, test = ([ln.split(" ") for ln in (out / conv / folder / f"{split}.txt").read_text()
                          .splitlines()] for split in ("dev", "test"))
            dev = dict(dev)
            assert len(test) == n and {s for s, _ in test} == set(dev)   # every stem once
            for stem, value in test:
                assert float(value) == pytest.approx(float(dev[stem]), rel=1e-6)
                if conv == "mean":
                    units = tok.encode_file(root / folder / "test" / f"{stem}.wav")
                    assert float(value) == pytest.approx(_mean_logprob(units), rel=1e-6)
    skips = [(r.levelname, r.getMessage()) for r in caplog.records if "skipped" in r.getMessage()]
    assert skips == [("ERROR", "sblimp_test: 1 of 7 files skipped (unreadable, empty, silent or no "
                      "units), its submission files lack them: the official tools will refuse them; "
                      "each one and why: submission_only.sblimp_test.skipped_files in "
                      f"{out / 'scores.json'}")]

def test_split_without_gold_nor_audio_and_broken_gold_stay_errors(tmp_path):
    root = tmp_path / "bench"
    (root / "lexical" / "test").mkdir(parents=True)
    make_syntactic(root / "syntactic" / "test", [("binding", "a", "1", "v1")])
    (root / "syntactic" / "test" / "gold.csv").write_text("filename,type\n")
    assert [str(p) for p in bm.validate(root)] == [
        f"error: {root / 'lexical' / 'test' / 'gold.csv'}: gold.csv is missing (and no audio)",
        f"error: {root / 'syntactic' / 'test' / 'gold.csv'}: bad columns: missing ['subtype', "
        "'id', 'voice', 'transcription', 'correct']; expected filename,type,subtype,id,voice,"
        "transcription,correct, found filename,type"]


def _scored_sets(out):
    return set(json.loads((out / "scores.json").read_text())["tasks"])


def test_two_evaluations_of_one_step_keep_each_others_sets(tmp_path, caplog):
    """Two slmjax-eval of one step (other --tasks) each read scores.json before scoring and wrote
    it after: the later writer dropped the other's sets. Now scores.json is read again when
    written, and a record of other settings is still replaced, not mixed with."""
    root = tmp_path / "bench"
    _build(root)
    benches = {b.name: b for b in bm.discover(root)}
    encoded, scorer = _encode(benches.values(), tmp_path, FakeTokenizer()), _bigram_scorer()
    out, meta = tmp_path / "zeroshot" / "7", {"step": 7, "checkpoint": "a"}
    for name in ("ssc", "swuggy_dev"):   # both found no scores.json before scoring
        scores = evaluate_model(scorer, [benches[name]], encoded, EOS, out, meta)
    assert set(scores["tasks"]) == _scored_sets(out) == {"ssc", "swuggy_dev"}
    assert set(scores["headline"]) >= {"ssc", "swuggy"}
    evaluate_model(scorer, [benches["sblimp_dev"]], encoded, EOS, out, {**meta, "checkpoint": "b"})
    assert _scored_sets(out) == {"sblimp_dev"} and not caplog.records
    evaluate_model(scorer, [benches["ssc"]], encoded, EOS, out, meta, previous={"tasks": {}})
    assert _scored_sets(out) == {"ssc"}
    assert "now holds scores of another checkpoint: written anew" in caplog.text


def test_scores_json_is_written_under_the_lock(tmp_path, caplog):
    """The read-merge-write of scores.json waits for another slmjax-eval holding the lock."""
    import threading

    from slmjax import fileio
    from slmjax.analysis.zeroshot.evaluate import LOCK_NAME
    root = tmp_path / "bench"
    make_storycloze(root / "sSC", 2)
    benches = bm.discover(root)
    encoded, scorer = _encode(benches, tmp_path, FakeTokenizer()), _bigram_scorer()
    out = tmp_path / "zeroshot" / "7"
    out.mkdir(parents=True)
    lock = fileio.PidLock(str(out / LOCK_NAME))
    writer = threading.Thread(target=evaluate_model,
                              args=(scorer, benches, encoded, EOS, out, {"step": 7}))
    writer.start()
    deadline = time.monotonic() + 10
    while not (out / "scores.json").exists() and "waiting for pid" not in caplog.text and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"waiting for pid {os.getpid()} to finish writing" in caplog.text
    time.sleep(0.3)
    assert writer.is_alive() and not (out / "scores.json").exists()
    lock.release()
    writer.join(10)
    assert not writer.is_alive() and _scored_sets(out) == {"ssc"}


def test_wavs_not_in_gold_are_scored_into_the_submission_only(tmp_path):
    """A wav of a sLM21 split absent from its gold.csv was left out of the submission files, which
    the official tools then refuse; it is scored into them, the accuracy still that of gold pairs."""
    root = tmp_path / "bench"
    _build(root)
    reference, _, _ = _score(root, tmp_path / "ref")
    write_units_wav(root / "lexical" / "dev" / "x_extra.wav", RISING)
    (problem,) = [p for p in bm.validate(root) if "not in gold.csv" in p.what]
    assert str(problem) == (f"warning: {root / 'lexical' / 'dev'}: 1 audio files not in gold.csv "
                            "(scored for lexical/dev.txt only, in no pair), e.g. ['x_extra']")
    scores, out, _ = _score(root, tmp_path)
    got, want = scores["tasks"]["swuggy_dev"], reference["tasks"]["swuggy_dev"]
    assert got["conventions"] == want["conventions"] and got["n_pairs"] == want["n_pairs"] == 4
    assert (got["n_files"], want["n_files"]) == (9, 8)
    lines = dict(ln.split(" ") for ln in (out / "mean" / "lexical" / "dev.txt").read_text()
                 .splitlines())
    assert len(lines) == 9
    assert float(lines["x_extra"]) == pytest.approx(_mean_logprob(RISING), rel=1e-6)


def test_a_lock_file_that_cannot_be_opened_still_writes_the_scores(tmp_path, monkeypatch, caplog):
    """Another user's .scores.json.lock (0644) in a group-writable step folder cannot be opened for
    writing: scores.json is still merged and written (without the lock, said in the log), not lost
    after the scoring to a traceback."""
    from slmjax.analysis.zeroshot.evaluate import LOCK_NAME
    root = tmp_path / "bench"
    make_storycloze(root / "sSC", 2)
    benches = bm.discover(root)
    encoded, scorer = _encode(benches, tmp_path, FakeTokenizer()), _bigram_scorer()
    out = tmp_path / "zeroshot" / "7"
    real_open = os.open

    def refuse_the_lock(path, *a, **kw):
        if os.path.basename(path) == LOCK_NAME:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(os, "open", refuse_the_lock)
    scores = evaluate_model(scorer, benches, encoded, EOS, out, {"step": 7})
    assert set(scores["tasks"]) == _scored_sets(out) == {"ssc"}
    assert f"{out / LOCK_NAME} cannot be opened" in caplog.text


def test_skipped_wav_not_in_gold_says_the_submission_lacks_it(tmp_path, caplog):
    """A skipped wav absent from gold.csv drops no pair, but its set's submission files lack it and
    the official tools refuse them: the warning says so, not only '0 of 4 pairs dropped'."""
    root = tmp_path / "bench"
    _build(root)
    write_units_wav(root / "lexical" / "dev" / "x_extra.wav", [])   # no samples: no units
    _, out, _ = _score(root, tmp_path)
    (message,) = [r.getMessage() for r in caplog.records if "swuggy_dev" in r.getMessage()]
    assert message.startswith("swuggy_dev: 1 of 9 files skipped (unreadable, empty, silent or no units), "
                              "0 of 4 pairs dropped, and its submission files lack them: the official "
                              "tools will refuse them;"), message


def test_a_rescore_with_other_settings_that_dies_leaves_no_record_claiming_the_old_ones(tmp_path):
    """A step scored at context 64, scored again with --context=128 and killed after the first
    set's submission files were rewritten: scores.json still said context 64, so slmjax-eval at 64
    called the step scored while lexical/dev.txt and per_file/ held the scores made at 128. The
    record being replaced (and the files of its sets) now goes before any file is rewritten."""
    root = tmp_path / "bench"
    _build(root)
    benches = bm.discover(root)
    encoded = _encode(benches, tmp_path, FakeTokenizer())
    out = tmp_path / "zeroshot" / "7"
    evaluate_model(_bigram_scorer(), benches, encoded, EOS, out, {"step": 7, "context": 64})
    assert (out / "mean" / "sSC.txt").is_file() and (out / "scores.json").is_file()

    class Killed(Exception):
        pass

    scorer, calls = _bigram_scorer(), []
    real = scorer.score

    def dies_on_the_second_set(seqs, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real(seqs, **kw)

    scorer.score = dies_on_the_second_set
    with pytest.raises(Killed):
        evaluate_model(scorer, benches, encoded, EOS, out, {"step": 7, "context": 128})
    assert (out / "mean" / "lexical" / "dev.txt").is_file()   # rewritten at 128 before the kill
    assert not (out / "scores.json").exists()                 # so no record says 64 of it
    evaluate_model(_bigram_scorer(), benches, encoded, EOS, out, {"step": 7, "context": 128})
    # a set of a replaced record that is not scored again leaves no file of the old settings
    evaluate_model(_bigram_scorer(), [b for b in benches if b.name == "ssc"], encoded, EOS, out,
                   {"step": 7, "context": 32})
    assert set(json.loads((out / "scores.json").read_text())["tasks"]) == {"ssc"}
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                  and not p.name.startswith("."))
    assert left == ["items/ssc.tsv", "mean/sSC.txt", "mean_eos/sSC.txt", "per_file/ssc.tsv", "scores.json",
                    "sum/sSC.txt"]


def test_two_folders_of_one_set_under_the_root_are_one_clear_error(tmp_path):
    """A root holding sSC/ and spoken_storycloze/ (or two sLM21 layouts in subfolders) scored the
    first in sort order and ignored the other without a word, in --validate too."""
    make_storycloze(tmp_path / "sSC", 2)
    make_storycloze(tmp_path / "spoken_storycloze", 1)
    make_lexical(tmp_path / "official" / "lexical" / "dev", [("1", 3, "v1")])
    make_lexical(tmp_path / "synthetic" / "lexical" / "dev", [("1", 3, "v1"), ("2", 0, "v1")])
    for tasks, task, dirs in ((["swuggy"], "swuggy", ["official/lexical", "synthetic/lexical"]),
                              (["ssc"], "ssc", ["sSC", "spoken_storycloze"])):
        with pytest.raises(ZeroShotError) as e:
            bm.discover(tmp_path, tasks)
        listed = ", ".join(str(tmp_path / d) for d in dirs)
        assert str(e.value) == (f"benchmarks root {tmp_path} holds 2 {task} folders ({listed}): "
                                "which one to score is not clear; pass a --benchmarks root that "
                                "holds one")
    with pytest.raises(ZeroShotError, match="holds 2 ssc folders"):
        bm.validate(tmp_path)
    shutil.rmtree(tmp_path / "spoken_storycloze")
    assert [b.name for b in bm.discover(tmp_path, ["ssc"])] == ["ssc"]   # only the set asked
    assert bm.discover(tmp_path / "official")[0].directory == tmp_path / "official" / "lexical" / "dev"


def test_sets_of_one_layout_in_different_subfolders_are_each_read(tmp_path):
    """BENCH/a/lexical and BENCH/b/syntactic: only the sLM21 layout found first was read, so the
    syntactic/ of b was never scored (reported missing)."""
    make_lexical(tmp_path / "a" / "lexical" / "dev", [("1", 3, "v1")])
    make_syntactic(tmp_path / "b" / "syntactic" / "dev", [("agr", "s1", "1", "v1")])
    benches = bm.discover(tmp_path)
    assert [(b.name, b.directory) for b in benches] == [
        ("swuggy_dev", tmp_path / "a" / "lexical" / "dev"),
        ("sblimp_dev", tmp_path / "b" / "syntactic" / "dev")]
    assert [b.name for b in bm.discover(tmp_path, ["sblimp"])] == ["sblimp_dev"]
    # a set in the root and the other one folder below
    shutil.move(tmp_path / "a" / "lexical", tmp_path / "lexical")
    assert [b.directory for b in bm.discover(tmp_path)] == [
        tmp_path / "lexical" / "dev", tmp_path / "b" / "syntactic" / "dev"]
    # two folders of one set stay one clear error
    make_syntactic(tmp_path / "c" / "syntactic" / "dev", [("agr", "s1", "1", "v1")])
    with pytest.raises(ZeroShotError, match="holds 2 sblimp folders"):
        bm.discover(tmp_path)


def test_items_backfilled_from_per_file_equal_the_scored_ones(tmp_path):
    from slmjax.analysis.zeroshot.evaluate import backfill_items
    root = tmp_path / "bench"
    _build(root)
    scores, out, _ = _score(root, tmp_path)
    written = {p.name: p.read_text() for p in (out / "items").iterdir()}
    shutil.rmtree(out / "items")
    benches = bm.discover(root)
    (out / "per_file" / "ssc.tsv").write_text("stem\tn_units\n")          # not as written: left
    old = out / "per_file" / "swuggy_dev.tsv"   # as written before the file_units column
    old.write_text("".join("\t".join(ln.split("\t")[:5]) + "\n" for ln in old.read_text().splitlines()))
    assert backfill_items(out, benches, scores) == ["swuggy_dev", "sblimp_dev"]
    assert {p.name: p.read_text() for p in (out / "items").iterdir()} == {
        k: v for k, v in written.items() if k != "ssc.tsv"}
    assert backfill_items(out, benches, scores) == []                    # present: not rewritten
    assert backfill_items(out, benches, {"tasks": {}}) == []             # not in the record
