"""Synthesis speed: at least 100x real time (slow: half an hour of audio)."""

import shutil

import pytest

from slmjax.synth import corpus, engines


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_corpus_synthesis_is_at_least_100x_real_time(tmp_path):
    s = corpus.build(str(tmp_path / "c"), hours=0.5, voices=engines.parse_voices("4"), seed=11)
    assert s["hours"] >= 0.5 and s["realtime_factor"] >= 100, s
