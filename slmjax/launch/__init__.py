"""slmjax.launch."""
