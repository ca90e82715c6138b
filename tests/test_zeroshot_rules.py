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
    # rows in any order score the same (joined on (voice, id)); the zerospeech2021 package's
    # lexical script pairs them by position, so shuffled rows are flagged
    assert any("file-order pairing" in p.what for p in bench.problems) == (shuffle is not None)


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


# Intervals that a bootstrap cannot estimate: a resampled set (a row's items, or a type's items in
# the stratified macro mean) of one item always redraws that item and adds no variance.

def _pairs_of(outcomes, task="sblimp", frequency=None):
    """Pairs and scores from ``outcomes``: (type, item outcome 1 / 0.5 / 0) per item, one voice."""
    pairs, scores = [], {}
    for i, (typ, o) in enumerate(outcomes):
        p = benchmarks.Pair(f"p{i}", f"n{i}", (typ, "s", str(i)), "v1", typ,
                            frequency=None if frequency is None else frequency[i])
        pairs.append(p)
        scores[p.pos], scores[p.neg] = {1.0: -1.0, 0.5: -2.0, 0.0: -3.0}[float(o)], -2.0
    return pairs, scores


def _numpy_interval(groups_values, seed=0, n=1000):
    """Independent float64 percentile bootstrap of the mean of group means (the macro mean; one
    group: the plain mean), groups resampled in sorted order, each from the one generator."""
    rng = np.random.default_rng(seed)
    reps = np.empty(n, np.float64)
    for b in range(n):
        reps[b] = np.mean([v[rng.integers(0, len(v), len(v))].mean()
                           for _, v in sorted(groups_values.items())])
    return np.percentile(reps, [2.5, 97.5])


TYPES12 = [f"t{i:02d}" for i in range(12)]


def test_macro_interval_of_one_item_per_type_is_not_estimable():
    """12 types x 1 item: the stratified bootstrap redraws the same 12 items every time, so the
    macro interval had zero width ([0.5, 0.5] here); it is null, with the reason."""
    outcomes = [1, 0, 0.5, 1, 0, 1, 0, 0.5, 1, 0, 1, 0]
    pairs, scores = _pairs_of(zip(TYPES12, outcomes))
    r = _rows(rules.aggregate("sblimp", pairs, scores))
    macro = r["macro"]
    assert macro["accuracy"] == pytest.approx(sum(outcomes) / 12) == pytest.approx(0.5)
    assert (macro["n_items"], macro["n_types"], macro["ci95"]) == (12, 12, None)
    assert macro["ci95_note"] == (
        "not estimable: a bootstrap stratified by type needs at least 2 items of every type; 12 of "
        "12 types have fewer: " + ", ".join(TYPES12))
    for t, o in zip(TYPES12, outcomes):     # each type row: one item, no interval either
        row = r[f"type/{t}"]
        assert (row["accuracy"], row["ci95"]) == (o, None)
        assert row["ci95_note"] == ("not estimable: a bootstrap over items needs at least 2 items; "
                                    "this row has 1")
    # the item row resamples 12 items: an interval, the independent calculation's
    item = r["item"]
    assert "ci95_note" not in item
    assert item["ci95"] == pytest.approx(_numpy_interval({"": np.array(outcomes, float)}), abs=1e-12)
    assert item["ci95"][1] - item["ci95"][0] > 0.3
    # the headline (what reports read) keeps the reason beside the null interval
    from slmjax.analysis.zeroshot.evaluate import headline
    task = {"split": "dev", "task": "sblimp", "conventions": {"mean": list(r.values())}}
    head = headline({"sblimp_dev": task})["sblimp"]
    assert (head["ci95"], head["ci95_note"]) == (None, macro["ci95_note"])


def test_macro_interval_with_one_single_item_type_is_not_estimable():
    """11 types of 50 items and one of 1: that type's variance is unknown, so is the interval's width."""
    rng = np.random.default_rng(7)
    outcomes = [(t, o) for t in TYPES12[:11] for o in rng.integers(0, 3, 50) / 2] + [(TYPES12[11], 1)]
    r = _rows(rules.aggregate("sblimp", *_pairs_of(outcomes)))
    assert r["macro"]["ci95"] is None
    assert r["macro"]["ci95_note"].endswith("; 1 of 12 types have fewer: t11")
    assert r["type/t11"]["ci95"] is None and r["type/t00"]["ci95"] is not None


def test_macro_interval_of_50_items_per_type_unchanged():
    """12 types x 50 items: the stratified interval, as an independent float64 bootstrap with the
    same generator gives it and as the rules gave it before single-item types were refused."""
    rng = np.random.default_rng(123)
    values = rng.integers(0, 3, 600) / 2.0
    outcomes = list(zip(np.repeat(TYPES12, 50), values))
    r = _rows(rules.aggregate("sblimp", *_pairs_of(outcomes)))
    macro = r["macro"]
    assert "ci95_note" not in macro
    expected = _numpy_interval({t: values[i * 50:(i + 1) * 50] for i, t in enumerate(TYPES12)})
    assert macro["ci95"] == pytest.approx(expected, abs=1e-12)
    assert macro["ci95"] == pytest.approx([0.45333333333333337, 0.5175], abs=1e-12)
    assert r["item"]["ci95"] == pytest.approx([0.4525, 0.5191875], abs=1e-12)


def test_single_item_frequency_band_has_no_interval():
    """sWUGGY bands are bootstrapped on their own (not stratified): a band of one item gets no
    interval, a band of two gets one."""
    freqs = [0, 3, 4, 500]                      # oov: 1 item, 1-5: 2 items, >100: 1 item
    outcomes = [1, 1, 0, 0.5]
    r = _rows(rules.aggregate("swuggy", *_pairs_of(zip(map(str, freqs), outcomes), frequency=freqs)))
    for band in ("oov", ">100"):
        row = r[f"frequency/{band}"]
        assert (row["n_items"], row["ci95"]) == (1, None) and "this row has 1" in row["ci95_note"]
    band = r["frequency/1-5"]
    assert "ci95_note" not in band
    assert band["ci95"] == pytest.approx(_numpy_interval({"": np.array([1.0, 0.0])}), abs=1e-12)
    assert r["all"]["ci95"] == pytest.approx(_numpy_interval({"": np.array(outcomes, float)}),
                                             abs=1e-12)
