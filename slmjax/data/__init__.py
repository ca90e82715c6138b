"""slmjax.data."""
