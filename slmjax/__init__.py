"""slmjax: scaling studies of speech language models in JAX."""

__version__ = "0.1.0"
