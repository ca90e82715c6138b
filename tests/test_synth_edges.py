"""Edge inputs of slmjax.synth: quoted dialogue, odd text files, odd voice lists, checker gaps,
and corpus outputs that must not depend on the worker count."""

import json
import os
import shutil

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
    assert not ex.leaks('Mom smiled. "The dog sleeps every day," said Tom. Then they went home.')
    ctx = ["Ann had a kite.", "It was red.", "The wind came.", "The kite flew away."]
    ex = leakage.Exclusions(context={leakage.text_hash(" ".join(ctx))})
    assert ex.leaks('Hi. "Ann had a kite." "It was red." The wind came. (The kite flew away.) Bye.')
