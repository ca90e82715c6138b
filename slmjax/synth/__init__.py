"""slmjax.synth."""
