"""The one error class of the units stage: a single line naming what is wrong."""


class UnitsError(Exception):
    """Bad input or configuration for speech-to-units; the message is one line for the user."""
