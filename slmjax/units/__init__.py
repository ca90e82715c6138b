"""slmjax.units: speech to discrete units (features, k-means, dedup, coarse tokens, unit datasets)."""

from slmjax.units.errors import UnitsError
from slmjax.units.ids import collapse, special_ids, with_eos
from slmjax.units.tokenizer import Tokenizer, load_tokenizer

__all__ = ["Tokenizer", "UnitsError", "collapse", "load_tokenizer", "special_ids", "with_eos"]
