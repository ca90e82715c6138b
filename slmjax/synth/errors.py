"""The one error class of slmjax.synth: a single line that says what is wrong."""


class SynthError(Exception):
    """Bad input or a missing engine; the message is one line naming the problem."""
