"""Agreement with the official scoring: ZeroSpeech 2021's lexical.py / syntactic.py re-implemented
here from their description (BENCHMARKS.md), exact ties for equal files, gold.csv as the official
tools read it."""

from collections import defaultdict

import jax
import numpy as np
import pytest

import slmjax.model
from slmjax.analysis.zeroshot import benchmarks, rules
from slmjax.analysis.zeroshot.scoring import Scorer, benchmark_sequence
from zeroshot_fixtures import make_lexical, make_syntactic


def _rows(rows):
    return {r["metric"]: r for r in rows}


def _official_by_item(gold_rows, scores, key, item):
    """Pair word / non-word rows on ``key``, 1 / 0.5 / 0 per pair, mean over voices per ``item``."""
    pos, neg = {}, {}
    for r in gold_rows:
        (pos if r["correct"] == 1 else neg)[key(r)] = r
    by_item, first = defaultdict(list), {}
    for k, w in pos.items():
        a, b = scores[w["filename"]], scores[neg[k]["filename"]]
        by_item[item(w)].append(0.5 * (a == b) + (a > b))
        first.setdefault(item(w), w)
    return {i: np.mean(v) for i, v in by_item.items()}, first


def _random_scores(rng, stems):
    # few distinct values: many ties, as after rounding or with equal unit sequences
    return {s: float(rng.integers(0, 4)) for s in stems}


def test_swuggy_agrees_with_the_official_rules(tmp_path):
    rng = np.random.default_rng(0)
    items = [(str(i), int(f), v) for i, f in enumerate(rng.choice([0, 1, 4, 5, 30, 100, 700], 60))
             for v in ("Alex", "Daniel", "Bruce", "Emily")[:rng.integers(1, 5)]]
    rows = make_lexical(tmp_path / "lexical" / "dev", items, shuffle_seed=1)
    gold = [dict(filename=r[0], id=r[1], voice=r[2], frequency=r[3], correct=r[7]) for r in rows]
    (bench,) = benchmarks.discover(tmp_path)
    scores = _random_scores(rng, [r["filename"] for r in gold])
    means, first = _official_by_item(gold, scores, lambda r: (r["voice"], r["id"]),
                                     lambda r: r["id"])
    freq = {i: first[i]["frequency"] for i in means}
    r = _rows(rules.aggregate("swuggy", bench.pairs, scores))
    assert r["all"]["n_items"] == len(means)
    assert r["all"]["accuracy"] == pytest.approx(np.mean(list(means.values())))
    in_vocab = [m for i, m in means.items() if freq[i] > 0]
    assert r["in_vocab"]["accuracy"] == pytest.approx(np.mean(in_vocab))
    for name, lo, hi in (("oov", 0, 1), ("1-5", 1, 5), ("6-20", 5, 20), ("21-100", 20, 100),
                         (">100", 100, np.inf)):
        band = [m for i, m in means.items() if lo <= freq[i] < hi]
        assert r[f"frequency/{name}"]["accuracy"] == pytest.approx(np.mean(band)), name


def test_sblimp_agrees_with_the_official_rules(tmp_path):
    rng = np.random.default_rng(1)
    types = benchmarks.SBLIMP_TYPES[:5]
    items = [(t, f"sub{s}", str(i), v) for t in types for s in range(2) for i in
             range(rng.integers(1, 6)) for v in ("v1", "v2", "v3", "v4")[:rng.integers(1, 5)]]
    rows = make_syntactic(tmp_path / "syntactic" / "dev", items, shuffle_seed=2)
    gold = [dict(filename=r[0], type=r[1], subtype=r[2], id=r[3], voice=r[4], correct=r[6])
            for r in rows]
    (bench,) = benchmarks.discover(tmp_path)
    scores = _random_scores(rng, [r["filename"] for r in gold])
    item = lambda r: (r["type"], r["subtype"], r["id"])  # noqa: E731
    means, _ = _official_by_item(gold, scores, lambda r: (*item(r), r["voice"]), item)
    r = _rows(rules.aggregate("sblimp", bench.pairs, scores))
    assert r["item"]["accuracy"] == pytest.approx(np.mean(list(means.values())))
    per_type = [np.mean([m for i, m in means.items() if i[0] == t]) for t in types]
    assert r["macro"]["accuracy"] == pytest.approx(np.mean(per_type))


def test_equal_files_tie_exactly_in_packed_batches():
    """Two files with the same units must tie (0.5), as the official rules score equal scores, in
    whatever rows of a packed batch they land."""
    k = 16
    cfg = slmjax.model.ModelConfig(vocab_size=k + 2, dim=64, n_layers=2, n_heads=1,
                                   max_seq_len=256, attention_block=32)
    params = slmjax.model.init_params(cfg, jax.random.key(0))
    rng = np.random.default_rng(0)
    seqs = [benchmark_sequence(rng.integers(0, k, rng.integers(5, 60)), k) for _ in range(40)]
    same = rng.integers(0, k, 23)
    seqs[3] = benchmark_sequence(same, k)
    seqs[30] = benchmark_sequence(same, k)

    def logits_fn(p, tokens, positions, segment_ids):
        return slmjax.model.forward(cfg, p, tokens, positions=positions, segment_ids=segment_ids)

    stats = Scorer(logits_fn, params, max_len=cfg.max_seq_len, pad_id=k + 1, mode="pack",
                   tokens_per_batch=512, progress=False).score(seqs)
    assert stats.body_logprob[3] == stats.body_logprob[30]
    assert stats.last_logprob[3] == stats.last_logprob[30]
    pair = benchmarks.Pair("a", "b", ("1",))
    (row,) = rules.aggregate("tsc", [pair], {"a": stats.body_logprob[3],
                                             "b": stats.body_logprob[30]})
    assert (row["accuracy"], row["tie_rate"]) == (0.5, 1.0)


def test_gold_csv_with_a_byte_order_mark_loads(tmp_path):
    """A gold.csv saved with a UTF-8 byte order mark (spreadsheet tools) reads as the official
    pandas-based scripts read it."""
    make_lexical(tmp_path / "lexical" / "dev", [("1", 3, "v1"), ("2", 0, "v1")])
    gold = tmp_path / "lexical" / "dev" / "gold.csv"
    gold.write_bytes(b"\xef\xbb\xbf" + gold.read_bytes())
    (bench,) = benchmarks.discover(tmp_path)
    assert not bench.errors and len(bench.pairs) == 2


def test_word_without_frequency_is_in_no_band(tmp_path):
    """The official script reads an empty frequency as missing (pandas Int64 NA), which
    pandas.cut puts in no band: such a word counts in ``all`` only, not as out of vocabulary."""
    make_lexical(tmp_path / "lexical" / "dev", [("1", "", "v1"), ("2", 0, "v1"), ("3", 7, "v1")])
    (bench,) = benchmarks.discover(tmp_path)
    scores = {s: 0.0 for s in bench.files}
    r = _rows(rules.aggregate("swuggy", bench.pairs, scores))
    assert r["all"]["n_items"] == 3 and r["in_vocab"]["n_items"] == 1
    assert r["frequency/oov"]["n_items"] == 1 and r["frequency/6-20"]["n_items"] == 1


def test_rows_out_of_file_order_are_flagged_for_both_zerospeech2021_scripts(tmp_path):
    """slmjax joins words and non-words on (voice, id) (BENCHMARKS.md; the newer zerospeech
    toolkit does too), but the zerospeech2021 package's lexical script, like its sBLIMP one, pairs
    the i-th correct row with the i-th incorrect row: a gold.csv whose rows are out of that order
    scores differently there, so both are flagged (the scores here do not change)."""
    items = [(str(i), 3, v) for i in range(5) for v in ("a", "b")]
    make_lexical(tmp_path / "lex" / "lexical" / "dev", items, shuffle_seed=3)
    (bench,) = benchmarks.discover(tmp_path / "lex")
    assert len(bench.pairs) == 10
    assert [p.severity for p in bench.problems] == ["warning"]
    assert "file-order pairing (used by the zerospeech2021 package's lexical script)" in bench.problems[0].what
    make_lexical(tmp_path / "lex2" / "lexical" / "dev", items)            # in file order: no warning
    (bench,) = benchmarks.discover(tmp_path / "lex2")
    assert bench.problems == [] and len(bench.pairs) == 10
    make_syntactic(tmp_path / "syn" / "syntactic" / "dev",
                   [("binding", "a", str(i), "v") for i in range(5)], shuffle_seed=3)
    (bench,) = benchmarks.discover(tmp_path / "syn")
    assert len(bench.pairs) == 5
    assert [p.severity for p in bench.problems] == ["warning"]
    assert "file-order pairing (used by the official sBLIMP script)" in bench.problems[0].what
