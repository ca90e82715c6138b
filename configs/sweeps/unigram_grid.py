"""The coarse-token study: the paper's grid over SentencePiece unigram tokens (vocab 5000) of units.

    slmjax-sweep --config=configs/sweeps/unigram_grid.py --root=/mnt/gcs/runs/unigram_grid \
        --config.data_path=/mnt/gcs/units/hubert25hz_k500_unigram5000 --dry_run

Same sizes, batch sizes, context (2050 tokens), D/N ratios and schedule rule as paper_grid.py;
the model's vocabulary is the 5000 pieces plus EOS and PAD (5002), which adds (5002 - 502) * dim
embedding parameters to N. The paper's unigram corpus holds 6.31B tokens; its unigram law has no
repetition terms, so this grid has no multi-epoch runs. Keys start with `uni_`.
"""

import importlib.util
import os


def _paper_grid():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_grid.py")
    spec = importlib.util.spec_from_file_location("_slmjax_paper_grid", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PIECES = 5000  # SentencePiece unigram vocabulary over unit sequences (the paper)


def get_config(arg=None):
    c = _paper_grid().get_config(arg)
    c.name = "unigram_grid"
    c.key_prefix = "uni_"
    c.unique_tokens = 6_310_000_000  # the paper's corpus in unigram tokens; 0: read the manifest
    c.multi_epoch.sizes = ()
    c.overrides.model = {"vocab_size": PIECES + 2}  # pieces, then EOS = 5000, PAD = 5001
    return c
