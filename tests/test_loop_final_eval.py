"""The final evaluation covers the whole held-out split (train.final_eval_batches = 0), while the
periodic ones read train.eval_batches: run.json's final_test_loss, which the scaling fits read,
equals slmjax-eval's independent held-out loss over every test token."""

import collections
import json

import numpy as np
import pytest


@pytest.mark.parametrize("test_split", [True, False], ids=["test_split", "held_out_of_train"])
def test_final_test_loss_covers_the_whole_split(tmp_path, test_split):
    """Also for a dataset without a test split: slmjax-eval takes the utterances the trainer held
    out of training (data.holdout), found from the run's config."""
    from configs.train import get_config
    from slmjax.analysis.zeroshot import runs
    from slmjax.analysis.zeroshot.scoring import Scorer
    from slmjax.analysis.zeroshot.testloss import heldout_loss, read_split, stream_windows
    from slmjax.data.testing import random_utterances, write_unit_dataset
    import slmjax.model
    from slmjax.train.checkpoint import restore_params
    from slmjax.train.loop import train

    rng = np.random.default_rng(0)
    train_utts, test_utts = random_utterances(200, 18, rng), random_utterances(80, 18, rng)
    splits = {"train": train_utts, "test": test_utts} if test_split else {
        "train": train_utts + test_utts}
    write_unit_dataset(str(tmp_path / "ds"), splits, vocab_size=18)
    c = get_config("tiny")
    c.model.vocab_size, c.model.max_seq_len, c.model.dim, c.model.n_heads = 18, 64, 32, 1
    c.data.kind, c.data.path, c.data.seq_len = "units", str(tmp_path / "ds"), 32
    c.data.holdout = 0.3
    c.train.batch_size, c.train.steps, c.train.eval_every = 8, 6, 3
    c.train.eval_batches = 1            # periodic evaluations: one batch of 8 windows
    c.train.progress = False
    c.checkpoint.async_save = False
    run = train(c, str(tmp_path / "run"))

    cfg, params, _ = restore_params(str(tmp_path / "run"))
    scorer = Scorer(lambda p, x, pos, seg: slmjax.model.forward(cfg, p, x, positions=pos,
                                                                segment_ids=seg),
                    params, max_len=32, pad_id=17, progress=False)
    (name, held), = runs.heldout_datasets(runs.run_units(tmp_path / "run")).items()
    assert (name, held.path, held.split, held.holdout) == ("ds", str(tmp_path / "ds"), "test", 0.3)
    ref = heldout_loss(scorer, held.path, held.split, holdout=held.holdout)
    assert ref["split"] == ("test" if test_split else "test (held out of train, 0.3)")
    assert ref["n_tokens"] > 4 * 8 * 32         # the split spans several evaluation batches
    # One batch of windows (what eval_batches=1 reads) gives a different figure; the whole split
    # matches up to the windows' borders (the trainer's windows do not overlap by one token).
    records, _ = read_split(held.path, held.split, held.holdout)
    if not test_split:   # 84 of the 280 utterances written
        written = collections.Counter(tuple(u) for u in train_utts + test_utts)
        assert len(records) == 84 and collections.Counter(tuple(r) for r in records) <= written
    first = scorer.score(stream_windows(records, 32)[:8], desc="first batch")
    one_batch = -float(np.sum(first.body_logprob + first.last_logprob)) / float(np.sum(first.n_targets))
    gap = abs(run["final_test_loss"] - ref["nll_per_unit"])
    assert gap < 1e-3 * ref["nll_per_unit"]
    # ... and run.json says over how many tokens: all but about one per 33-token window.
    assert ref["n_tokens"] * 32 / 33 - 33 <= run["final_test_tokens"] <= ref["n_tokens"]
    assert abs(one_batch - ref["nll_per_unit"]) > 5 * gap
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["test_loss"] for r in rows if "test_loss" in r}
    assert set(losses) == {3, 6} and losses[6] == run["final_test_loss"]


def test_evaluation_steps_take_one_micro_batch_of_rows(tmp_path, monkeypatch):
    """With train.micro_batches = 4 an evaluation step holds batch_size / 4 rows (a whole batch
    needs the forward memory micro-batching avoids) and reads the same rows: the same losses as
    with whole batches, periodic (eval_batches) and final (the whole split)."""
    import jax
    from configs.train import get_config
    from slmjax.data import build_pipeline
    from slmjax.data.testing import random_utterances, write_unit_dataset
    from slmjax.model import init_params
    from slmjax.train import loop
    from slmjax.train.mesh import make_mesh

    rng = np.random.default_rng(1)
    write_unit_dataset(str(tmp_path / "ds"), {"train": random_utterances(60, 18, rng),
                                              "test": random_utterances(50, 18, rng)}, vocab_size=18)
    c = get_config("tiny")
    c.model.vocab_size, c.model.max_seq_len, c.model.dim, c.model.n_heads = 18, 64, 32, 1
    c.data.kind, c.data.path, c.data.seq_len = "units", str(tmp_path / "ds"), 32
    c.train.batch_size, c.train.eval_batches = 32, 1
    mesh, pipeline = make_mesh(c.mesh), build_pipeline(c)
    params = init_params(loop.model_config(c), jax.random.key(0))
    rows = []
    real_step = loop.make_eval_step

    def recording(config, mesh):
        step = real_step(config, mesh)
        return lambda p, batch: (rows.append(batch["inputs"].shape[0]), step(p, batch))[1]

    monkeypatch.setattr(loop, "make_eval_step", recording)
    whole = loop._Evaluator(c, mesh, pipeline)
    want = (whole(params), whole(params, final=True))
    assert set(rows) == {32}
    rows.clear()
    c.train.micro_batches = 4
    micro = loop._Evaluator(c, mesh, pipeline)
    got = (micro(params), micro(params, final=True))
    assert set(rows) == {8}
    for g, w in zip(got, want):
        assert g["test_tokens"] == w["test_tokens"]
        np.testing.assert_allclose(g["test_loss"], w["test_loss"], rtol=1e-6)
    assert want[0]["test_tokens"] < want[1]["test_tokens"]  # one batch spread over the split, then all of it
