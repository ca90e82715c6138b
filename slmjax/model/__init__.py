"""slmjax.model."""
