"""Scoring core: closed-form likelihoods, conventions, batch independence, sharding over 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slmjax.analysis.zeroshot.scoring import (Scorer, benchmark_sequence, bucket_ladder,
                                              file_scores)

V, EOS, PAD = 12, 10, 11


def bigram_logits(table, tokens, positions, segment_ids):
    del positions, segment_ids
    return table[tokens]


def _bigram_reference(table64, seq):
    """float64 NumPy: log p of each target of ``seq`` under the bigram table."""
    logp = table64 - np.log(np.exp(table64).sum(-1, keepdims=True))
    return np.array([logp[a, b] for a, b in zip(seq[:-1], seq[1:])])


def _random_units(rng, n, lo=3, hi=40):
    return [rng.integers(0, EOS, rng.integers(lo, hi)) for _ in range(n)]


@pytest.mark.parametrize("mode", ["bucket", "pack"])
def test_bigram_closed_form(mode):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(V, V)).astype(np.float32) * 2
    units = _random_units(rng, 37) + [np.array([4])]
    scorer = Scorer(bigram_logits, jnp.asarray(table), max_len=64, pad_id=PAD,
                    tokens_per_batch=256, mode=mode, progress=False)
    stats = scorer.score([benchmark_sequence(u, EOS) for u in units])
    for conv in ("mean", "sum", "mean_eos"):
        got = file_scores(stats, conv)
        for u, g in zip(units, got):
            lp = _bigram_reference(table.astype(np.float64), [EOS, *u, EOS])
            want = {"mean": lp[:-1].mean(), "sum": lp[:-1].sum(), "mean_eos": lp.mean()}[conv]
            assert g == pytest.approx(want, rel=1e-5, abs=1e-5)
    assert list(stats.n_targets) == [len(u) + 1 for u in units]
    # the terminal EOS log-prob is its own field
    u = units[0]
    assert stats.last_logprob[0] == pytest.approx(
        _bigram_reference(table.astype(np.float64), [EOS, *u, EOS])[-1], rel=1e-5)


def test_uniform_model_exact():
    """A uniform model gives log(1/V) per unit: mean = -log V exactly, sum = -n log V."""
    scorer = Scorer(bigram_logits, jnp.zeros((V, V)), max_len=32, pad_id=PAD, progress=False)
    units = [np.arange(5), np.arange(9) % 7]
    stats = scorer.score([benchmark_sequence(u, EOS) for u in units])
    np.testing.assert_allclose(file_scores(stats, "mean"), -np.log(V), rtol=1e-6)
    np.testing.assert_allclose(file_scores(stats, "sum"), [-5 * np.log(V), -9 * np.log(V)],
                               rtol=1e-6)


# A tiny causal attention LM (learned positions, segment-aware) written here, independent of slmjax.
D = 16


def tiny_attention_params(key):
    ks = jax.random.split(key, 6)
    n = lambda k, s: jax.random.normal(k, s) * 0.5  # noqa: E731
    return {"emb": n(ks[0], (V, D)), "pos": n(ks[1], (128, D)), "wq": n(ks[2], (D, D)),
            "wk": n(ks[3], (D, D)), "wv": n(ks[4], (D, D)), "out": n(ks[5], (D, V))}


def tiny_attention_logits(p, tokens, positions, segment_ids):
    b, t = tokens.shape
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(t), (b, t))
    if segment_ids is None:
        segment_ids = jnp.ones((b, t), jnp.int32)
    x = p["emb"][tokens] + p["pos"][positions]
    q, k, v = x @ p["wq"], x @ p["wk"], x @ p["wv"]
    att = jnp.einsum("btd,bsd->bts", q, k) / np.sqrt(D)
    mask = (jnp.arange(t)[:, None] >= jnp.arange(t)[None, :])[None] & (
        segment_ids[:, :, None] == segment_ids[:, None, :])
    att = jnp.where(mask, att, -1e30)
    h = x + jnp.einsum("bts,bsd->btd", jax.nn.softmax(att, -1), v)
    return h @ p["out"]


@pytest.mark.parametrize("mode", ["bucket", "pack"])
def test_batch_independence(mode):
    params = tiny_attention_params(jax.random.key(1))
    rng = np.random.default_rng(2)
    target = benchmark_sequence(rng.integers(0, EOS, 21), EOS)
    others = [benchmark_sequence(u, EOS) for u in _random_units(rng, 40, 9, 40)]
    alone = Scorer(tiny_attention_logits, params, max_len=64, pad_id=PAD, mode=mode,
                   tokens_per_batch=64, progress=False).score([target])
    ref = file_scores(alone, "mean")[0]
    for tpb, shuffle_seed in ((256, 0), (4096, 2)):
        order = np.random.default_rng(shuffle_seed).permutation(len(others) + 1)
        seqs = [([target] + others)[i] for i in order]
        mixed = Scorer(tiny_attention_logits, params, max_len=64, pad_id=PAD, mode=mode,
                       tokens_per_batch=tpb, progress=False).score(seqs)
        where = int(np.flatnonzero(order == 0)[0])
        assert file_scores(mixed, "mean")[where] == pytest.approx(ref, rel=1e-5, abs=1e-6)
        assert mixed.last_logprob[where] == pytest.approx(alone.last_logprob[0], rel=1e-5,
                                                          abs=1e-6)


def test_batch_independence_against_float64_reference():
    """Scores in mixed batches equal a float64 NumPy forward of each sequence alone."""
    params = tiny_attention_params(jax.random.key(3))
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    rng = np.random.default_rng(4)
    seqs = [benchmark_sequence(u, EOS) for u in _random_units(rng, 25, 2, 50)]
    stats = Scorer(tiny_attention_logits, params, max_len=64, pad_id=PAD, mode="pack",
                   tokens_per_batch=512, progress=False).score(seqs)
    for seq, got in zip(seqs, stats.body_logprob):
        want = _attention_reference(p64, seq)[:-1].sum()
        assert got == pytest.approx(want, rel=1e-4, abs=1e-4)


def _attention_reference(p64, seq):
    """float64 NumPy: log p of each target of ``seq`` under the tiny attention LM, seq alone."""
    x = p64["emb"][seq[:-1]] + p64["pos"][np.arange(len(seq) - 1)]
    q, k, v = x @ p64["wq"], x @ p64["wk"], x @ p64["wv"]
    att = q @ k.T / np.sqrt(D)
    att[np.triu_indices(len(x), 1)] = -np.inf
    att = np.exp(att - att.max(-1, keepdims=True))
    h = x + (att / att.sum(-1, keepdims=True)) @ v
    logits = h @ p64["out"]
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                           keepdims=True)) - logits.max(-1, keepdims=True)
    return logp[np.arange(len(seq) - 1), seq[1:]]


@pytest.mark.parametrize("mode", ["bucket", "pack"])
def test_a_file_longer_than_the_context_is_scored_on_a_full_context(mode):
    """[EOS] + 50 units + [EOS] at a context of 16: the units' scores are the last 16 units', each
    read in the window of the 16 tokens ending before it; the terminal EOS is read after the last
    16 units. One window ending at the EOS scored only 15 units."""
    params = tiny_attention_params(jax.random.key(7))
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    rng = np.random.default_rng(8)
    long, short = (benchmark_sequence(rng.integers(0, EOS, n), EOS) for n in (50, 9))
    stats = Scorer(tiny_attention_logits, params, max_len=16, pad_id=PAD, mode=mode,
                   tokens_per_batch=64, progress=False).score([short, long, short])
    assert stats.truncated.tolist() == [False, True, False]
    assert stats.n_targets.tolist() == [10, 17, 10]
    body = _attention_reference(p64, long[:-1][-17:]).sum()
    eos = _attention_reference(p64, long[-17:])[-1]
    assert stats.body_logprob[1] == pytest.approx(body, rel=1e-5)
    assert stats.last_logprob[1] == pytest.approx(eos, rel=1e-5)
    assert file_scores(stats, "mean")[1] == pytest.approx(body / 16, rel=1e-5)
    ref = _attention_reference(p64, short)
    assert stats.body_logprob[0] == pytest.approx(ref[:-1].sum(), rel=1e-5)
    assert stats.last_logprob[2] == pytest.approx(ref[-1], rel=1e-5)


def test_data_parallel_over_eight_devices_and_ladder():
    assert jax.device_count() == 8
    scorer = Scorer(bigram_logits, jnp.zeros((V, V)), max_len=200, pad_id=PAD, progress=False)
    assert scorer.n_dev == 8
    ladder = bucket_ladder(200)
    assert ladder[0] == 8 and ladder[-1] == 200 and all(b > a for a, b in zip(ladder, ladder[1:]))
    assert all(t % 8 == 0 for t in ladder[:-1])


def test_packing_fills_rows():
    from slmjax.analysis.zeroshot.scoring import plan_packed
    rng = np.random.default_rng(0)
    lengths = rng.integers(18, 77, 3000)
    seqs = [np.zeros(n + 1, np.int32) for n in lengths]
    batches = plan_packed(lengths, max_len=2048, tokens_per_batch=65536, n_dev=8, pad_id=PAD,
                          seqs=seqs)
    assert batches[0].tokens.shape[1] == 256          # short rows for short files
    spans = sorted(sp[0] for b in batches for sp in b.spans)
    assert spans == list(range(3000))                  # every sequence exactly once
    used = sum(sp[3] for b in batches for sp in b.spans)
    rows = sum(len({sp[1] for sp in b.spans}) for b in batches)
    assert used / (rows * 256) > 0.97


def test_too_long_sequence_keeps_the_end():
    table = np.random.default_rng(5).normal(size=(V, V)).astype(np.float32)
    u = np.arange(50) % 10
    seq = benchmark_sequence(u, EOS)
    stats = Scorer(bigram_logits, jnp.asarray(table), max_len=16, pad_id=PAD,
                   progress=False).score([seq])
    assert stats.truncated[0] and stats.n_targets[0] == 17   # the last 16 units and the EOS
    assert stats.seq_len[0] == 52                             # the file's 50 units, 2 EOS
    lp = _bigram_reference(table.astype(np.float64), seq[-18:])
    assert stats.body_logprob[0] == pytest.approx(lp[:-1].sum(), rel=1e-5)
    assert stats.last_logprob[0] == pytest.approx(lp[-1], rel=1e-5)


def test_auto_plan_picks_the_cheaper_batching():
    from slmjax.analysis.zeroshot.scoring import plan_batches, plan_cost
    rng = np.random.default_rng(1)
    for lo, hi, want in ((18, 77, "pack"), (280, 470, "bucket")):
        lengths = rng.integers(lo, hi, 400)
        seqs = [np.zeros(n + 1, np.int32) for n in lengths]
        kw = dict(max_len=2048, tokens_per_batch=16384, n_dev=8, pad_id=PAD, seqs=seqs, width=256)
        plans = {m: plan_batches(lengths, mode=m, **kw) for m in ("bucket", "pack", "auto")}
        got = "pack" if plans["auto"][0].segment_ids is not None else "bucket"
        assert got == want
        assert plan_cost(plans["auto"], 256) == min(plan_cost(plans[m], 256)
                                                    for m in ("bucket", "pack"))
