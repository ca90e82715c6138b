"""Official aggregation rules on hand-built gold sets with known answers."""

import numpy as np
import pytest

from slmjax.analysis.zeroshot import benchmarks, rules
from zeroshot_fixtures import make_lexical, make_storycloze, make_syntactic


def _rows(rows):
    return {r["metric"]: r for r in rows}


# sWUGGY: per (id, voice) outcome; then mean over voices per id.
SWUGGY_ITEMS = [("1", 0, "v1"), ("1", 0, "v2"),      # oov: win + tie -> 0.75
                ("2", 3, "v1"), ("2", 3, "v2"),      # 1-5: win + loss -> 0.5
                ("3", 50, "v1"), ("3", 50, "v2"),    # 21-100: loss + loss -> 0
                ("4", 500, "v1")]                    # >100: win -> 1
SWUGGY_OUTCOME = {("1", "v1"): 1, ("1", "v2"): 0.5, ("2", "v1"): 1, ("2", "v2"): 0,
                  ("3", "v1"): 0, ("3", "v2"): 0, ("4", "v1"): 1}


def _scores_from_outcomes(bench, outcome_of):
    scores = {}
    for p in bench.pairs:
        o = outcome_of(p)
        scores[p.pos] = {1: -1.0, 0.5: -2.0, 0: -3.0}[o]
        scores[p.neg] = -2.0
    return scores


@pytest.mark.parametrize("shuffle", [None, 0, 1])
def test_swuggy_all_in_vocab_bands(tmp_path, shuffle):
    make_lexical(tmp_path / "lexical" / "dev", SWUGGY_ITEMS, shuffle_seed=shuffle)
    (bench,) = benchmarks.discover(tmp_path)
    assert bench.name == "swuggy_dev" and len(bench.pairs) == 7
    scores = _scores_from_outcomes(bench, lambda p: SWUGGY_OUTCOME[(p.item[0], p.voice)])
    r = _rows(rules.aggregate("swuggy", bench.pairs, scores))
    assert r["all"]["accuracy"] == pytest.approx((0.75 + 0.5 + 0 + 1) / 4)
    assert r["all"]["n_items"] == 4
    assert r["in_vocab"]["accuracy"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert r["frequency/oov"]["accuracy"] == pytest.approx(0.75)
    assert r["frequency/1-5"]["accuracy"] == pytest.approx(0.5)
    assert r["frequency/21-100"]["accuracy"] == pytest.approx(0.0)
    assert r["frequency/>100"]["accuracy"] == pytest.approx(1.0)
    assert "frequency/6-20" not in r
    assert r["all"]["tie_rate"] == pytest.approx(1 / 7)
    lo, hi = r["all"]["ci95"]
    assert 0.0 <= lo <= r["all"]["accuracy"] <= hi <= 1.0
    # rows in any order: the official lexical script joins on (voice, id) too, so no warning
    assert not any("file-order pairing" in p.what for p in bench.problems)


def test_each_row_has_the_tie_rate_of_its_own_pairs(tmp_path):
    """The one tie of SWUGGY_ITEMS is an oov pair: 1 of 7 pairs in "all", 1 of the 2 oov pairs,
    none of the 5 in-vocabulary ones (every row said 1/7)."""
    make_lexical(tmp_path / "lexical" / "dev", SWUGGY_ITEMS)
    (bench,) = benchmarks.discover(tmp_path)
    scores = _scores_from_outcomes(bench, lambda p: SWUGGY_OUTCOME[(p.item[0], p.voice)])
    r = _rows(rules.aggregate("swuggy", bench.pairs, scores))
    assert {m: row["tie_rate"] for m, row in r.items()} == pytest.approx({
        "all": 1 / 7, "in_vocab": 0.0, "frequency/oov": 0.5, "frequency/1-5": 0.0,
        "frequency/21-100": 0.0, "frequency/>100": 0.0})


def test_swuggy_frequency_bands_cut_where_the_official_script_cuts(tmp_path):
    # ZeroSpeech 2021's lexical.py: pandas.cut(frequency, [0, 1, 5, 20, 100, inf], right=False,
    # labels=['oov', '1-5', '6-20', '21-100', '>100']): a word seen 5 times falls in "6-20".
    freqs = [0, 1, 4, 5, 19, 20, 99, 100, 101]
    expected = {"oov": [0], "1-5": [1, 4], "6-20": [5, 19], "21-100": [20, 99], ">100": [100, 101]}
    make_lexical(tmp_path / "lexical" / "dev", [(str(f), f, "v1") for f in freqs])
    (bench,) = benchmarks.discover(tmp_path)
    wins = {0, 4, 19, 99, 101}  # one win per band, the other item of a band loses
    scores = _scores_from_outcomes(bench, lambda p: 1 if int(p.item[0]) in wins else 0)
    r = _rows(rules.aggregate("swuggy", bench.pairs, scores))
    for band, members in expected.items():
        row = r[f"frequency/{band}"]
        assert row["n_items"] == len(members), band
        assert row["accuracy"] == pytest.approx(np.mean([f in wins for f in members])), band


def test_unknown_frequency_only_counts_in_all(tmp_path):
    make_lexical(tmp_path / "lexical" / "dev", [("1", 3, "v1"), ("2", "inf", "v1"),
                                                 ("3", "2.5", "v1"), ("4", "1e2", "v1")])
    (bench,) = benchmarks.discover(tmp_path)
    gold = tmp_path / "lexical" / "dev" / "gold.csv"
    assert [str(p) for p in bench.problems] == [
        f"error: {gold}:{line}: bad value in column frequency: {v!r} (not a word count; the item "
        "is left out of the frequency rows)" for line, v in ((4, "inf"), (6, "2.5"))]
    scores = _scores_from_outcomes(bench, lambda p: 0 if p.item == ("4",) else 1)
    r = _rows(rules.aggregate("swuggy", bench.pairs, scores))
    assert (r["all"]["n_items"], r["all"]["accuracy"]) == (4, pytest.approx(3 / 4))
    assert (r["in_vocab"]["n_items"], r["in_vocab"]["accuracy"]) == (2, pytest.approx(1 / 2))
    assert {k: v["n_items"] for k, v in r.items() if k.startswith("frequency/")} == {
        "frequency/1-5": 1, "frequency/>100": 1}


@pytest.mark.parametrize("task", sorted(rules.RULES))
def test_no_items_is_null_not_nan(task):
    for row in rules.aggregate(task, [], {}):
        assert (row["n_items"], row["accuracy"], row["ci95"], row["tie_rate"]) == (0, None, None, None)


SBLIMP_ITEMS = [("anaphor_agreement", "a", "1", v) for v in ("v1", "v2")] + \
               [("anaphor_agreement", "a", "2", v) for v in ("v1", "v2")] + \
               [("anaphor_agreement", "b", "3", v) for v in ("v1", "v2")] + \
               [("binding", "c", "1", v) for v in ("v1", "v2", "v3", "v4")]
SBLIMP_OUTCOME = {("anaphor_agreement", "a", "1"): {"v1": 1, "v2": 1},      # 1
                  ("anaphor_agreement", "a", "2"): {"v1": 0.5, "v2": 1},    # 0.75
                  ("anaphor_agreement", "b", "3"): {"v1": 0, "v2": 0},      # 0
                  ("binding", "c", "1"): {"v1": 1, "v2": 1, "v3": 1, "v4": 0}}  # 0.75


@pytest.mark.parametrize("shuffle", [None, 3])
def test_sblimp_item_and_macro(tmp_path, shuffle):
    make_syntactic(tmp_path / "syntactic" / "test", SBLIMP_ITEMS, shuffle_seed=shuffle)
    (bench,) = benchmarks.discover(tmp_path)
    assert bench.name == "sblimp_test" and bench.submission == "syntactic/test.txt"
    scores = _scores_from_outcomes(bench, lambda p: SBLIMP_OUTCOME[p.item][p.voice])
    r = _rows(rules.aggregate("sblimp", bench.pairs, scores))
    assert r["item"]["accuracy"] == pytest.approx((1 + 0.75 + 0 + 0.75) / 4)
    assert r["macro"]["accuracy"] == pytest.approx(((1 + 0.75 + 0) / 3 + 0.75) / 2)
    assert r["macro"]["n_types"] == 2
    assert r["type/binding"]["accuracy"] == pytest.approx(0.75)
    assert r["type/anaphor_agreement"]["n_items"] == 3
    assert not bench.problems or shuffle is not None   # known types, file order pairs the items


def test_storycloze_ties(tmp_path):
    make_storycloze(tmp_path / "tSC", 4)
    (bench,) = benchmarks.discover(tmp_path)
    assert bench.task == "tsc" and len(bench.pairs) == 4
    pos = [-1.0, -2.0, -3.0, -1.5]
    neg = [-2.0, -2.0, -1.0, -1.6]          # win, tie, loss, win
    scores = {}
    for p, a, b in zip(sorted(bench.pairs, key=lambda p: p.item), pos, neg):
        scores[p.pos], scores[p.neg] = a, b
    (row,) = rules.aggregate("tsc", bench.pairs, scores)
    assert row["accuracy"] == pytest.approx(2.5 / 4)
    assert row["tie_rate"] == pytest.approx(0.25)
    assert row["n_items"] == 4


def test_bootstrap_interval_covers_and_shrinks():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 2, 50).astype(float)
    big = rng.integers(0, 2, 5000).astype(float)
    a = rules._interval(rules._mean, small)
    b = rules._interval(rules._mean, big)
    assert a[0] <= small.mean() <= a[1] and b[0] <= big.mean() <= b[1]
    assert (b[1] - b[0]) < (a[1] - a[0])
    # the binomial standard error predicts the width of the 95% interval
    se = np.sqrt(big.mean() * (1 - big.mean()) / len(big))
    assert (b[1] - b[0]) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_sc_folder_names(tmp_path):
    for name in ("sStoryCloze", "topic_storycloze"):
        make_storycloze(tmp_path / "x" / name, 1)
    names = sorted(b.task for b in benchmarks.discover(tmp_path))
    assert names == ["ssc", "tsc"]
