"""Zero-shot spoken benchmarks: sBLIMP, sWUGGY (ZeroSpeech 2021 sLM21), spoken and topic StoryCloze.

benchmarks  official layouts: discovery, loading, validation
units_cache benchmark audio -> units, cached per (benchmark, tokenizer identity)
scoring     batched, length-bucketed log-likelihoods over a data-parallel mesh; conventions
rules       the official aggregation rules, bootstrap intervals
evaluate    one model on all sets -> scores.json + submission files
testloss    mean NLL per unit on a held-out unit dataset
runs        a run's tokenizer, datasets and checkpoints (public slmjax.train.checkpoint only)
cli         slmjax-eval
"""

from slmjax.analysis.zeroshot.benchmarks import Benchmark, Pair, Problem, discover, validate
from slmjax.analysis.zeroshot.errors import ZeroShotError
from slmjax.analysis.zeroshot.rules import aggregate
from slmjax.analysis.zeroshot.scoring import (CONVENTIONS, Scorer, SeqStats, benchmark_sequence,
                                              file_scores)

__all__ = ["CONVENTIONS", "Benchmark", "Pair", "Problem", "Scorer", "SeqStats", "ZeroShotError",
           "aggregate", "benchmark_sequence", "discover", "file_scores", "validate"]
