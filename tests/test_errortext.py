"""One-line exception descriptions used by every stage's wrapped errors."""

from slmjax.errortext import describe, first_line


def test_first_line_takes_the_first_nonblank_line_or_the_type():
  assert first_line(ValueError("\n  bad value\nsecond line")) == "bad value"
  assert first_line(KeyError()) == "KeyError"
  assert first_line(OSError("x" * 300), 200) == "x" * 200
  assert first_line(OSError("x" * 300)) == "x" * 300


def test_describe_prefixes_the_type_and_cuts_at_200():
  assert describe(ValueError("bad value\nmore")) == "ValueError: bad value"
  assert describe(RuntimeError("   ")) == "RuntimeError"
  assert describe(OSError("y" * 250)) == "OSError: " + "y" * 200
