"""slmjax.analysis."""
