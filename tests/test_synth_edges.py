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


def test_text_files_with_a_bom_blank_lines_of_spaces_or_another_encoding(tmp_path):
    shard = tmp_path / "data00.json"  # a JSON array saved with a UTF-8 byte order mark (Windows editors)
    shard.write_bytes("\ufeff".encode() + json.dumps([{"story": "A dog ran."}]).encode())
    assert list(textsrc.from_file(str(shard))) == [{"id": "data00-00000000", "text": "A dog ran."}]
    plain = tmp_path / "s.txt"  # stories separated by a line that holds only spaces and a tab
    plain.write_bytes("\ufeffA cat sat.\n  \t\nA dog ran.\r\n \r\nThe end.\n".encode())
    assert [r["text"] for r in textsrc.from_file(str(plain))] == ["A cat sat.", "A dog ran.", "The end."]
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\xe9 time.\n".encode("latin-1"))
    with pytest.raises(SynthError, match=r"latin\.txt: not UTF-8 text") as e:
        list(textsrc.from_file(str(latin)))
    assert "\n" not in str(e.value)
