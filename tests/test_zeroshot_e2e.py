"""End to end: a synthetic spoken corpus -> MFCC units -> a tiny trained run -> slmjax-eval on
generated sBLIMP / sWUGGY / sSC / tSC sets in the official layouts. Slow (TTS, k-means, training)."""

import csv
import json

import pytest

from run_helpers import cli

pytestmark = pytest.mark.slow


def test_synthetic_corpus_to_zeroshot_scores(tmp_path):
    from configs.train import get_config
    from slmjax.train.loop import train
    bench, corpus = tmp_path / "bench", tmp_path / "corpus"
    cli("slmjax.synth.cli", "bench", f"--out={bench}", "--n=16", "--voices=2", "--workers=2")
    cli("slmjax.synth.cli", "corpus", f"--out={corpus}", "--hours=0.05", "--voices=2",
        f"--exclude={bench}", "--workers=2", "--test_fraction=0.2")
    cli("slmjax.units.cli", "fit", f"--audio={corpus / 'manifest.jsonl'}",
        f"--out={tmp_path / 'tok'}", "--k=50")
    cli("slmjax.units.cli", "encode", f"--tokenizer={tmp_path / 'tok'}",
        f"--audio={corpus / 'manifest.jsonl'}", f"--out={tmp_path / 'ds'}")
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    c = get_config("tiny")
    c.model.vocab_size = manifest["vocab_size"]
    c.model.max_seq_len = 1024
    c.data.kind, c.data.path, c.data.seq_len = "units", str(tmp_path / "ds"), 128
    c.train.batch_size, c.train.steps, c.train.eval_every = 8, 20, 10
    c.train.progress = False
    c.checkpoint.every_steps, c.checkpoint.async_save = 10, False
    train(c, str(tmp_path / "run"))

    res = cli("slmjax.analysis.zeroshot.cli", f"--workdir={tmp_path / 'run'}",
              f"--benchmarks={bench}", f"--tokenizer={tmp_path / 'tok'}")
    assert len(res.stdout.strip().splitlines()) == 2          # one summary line per checkpoint
    for step in (10, 20):
        out = tmp_path / "run" / "zeroshot" / str(step)
        scores = json.loads((out / "scores.json").read_text())
        assert set(scores["tasks"]) == {"swuggy_dev", "swuggy_test", "sblimp_dev", "sblimp_test",
                                        "ssc", "tsc"}
        assert set(scores["headline"]) == {"sblimp", "sblimp_item", "swuggy", "swuggy_in_vocab",
                                           "ssc", "tsc"}
        for name, entry in scores["tasks"].items():
            for conv, rows in entry["conventions"].items():
                for row in rows:
                    assert 0.0 <= row["accuracy"] <= 1.0 and row["n_items"] > 0
                    if row["ci95"] is None:   # --n=16: 8 of the 12 sBLIMP types have 1 item
                        assert row["ci95_note"].startswith("not estimable: ")
                    else:
                        assert row["ci95"][0] <= row["accuracy"] <= row["ci95"][1]
        # official submission files: every gold stem exactly once
        for folder in ("lexical", "syntactic"):
            for split in ("dev", "test"):
                with open(bench / folder / split / "gold.csv") as f:
                    gold = {r["filename"] for r in csv.DictReader(f)}
                lines = (out / "mean" / folder / f"{split}.txt").read_text().splitlines()
                assert sorted(ln.split(" ")[0] for ln in lines) == sorted(gold)
        assert len((out / "mean" / "sSC.txt").read_text().splitlines()) == 32
        assert scores["test_loss"]
    again = cli("slmjax.analysis.zeroshot.cli", f"--workdir={tmp_path / 'run'}",
                f"--benchmarks={bench}", f"--tokenizer={tmp_path / 'tok'}")
    assert "already scored" in again.stderr and not again.stdout.strip()
