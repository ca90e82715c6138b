"""slmjax.train."""
