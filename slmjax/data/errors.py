"""The one error type the data stage raises for bad input (one line, names what is wrong)."""


class DataError(ValueError):
  """A unit dataset or data config is unusable; the message says which and why."""
