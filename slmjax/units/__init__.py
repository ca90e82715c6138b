"""slmjax.units."""
