"""The one error class of the scaling analysis: a bad run table or bad options, in one line."""


class FitInputError(ValueError):
    """Raised for input the fits cannot use; the message is one line naming what is wrong."""
