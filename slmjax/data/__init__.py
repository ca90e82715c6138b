"""slmjax.data: unit datasets (ArrayRecord via Grain), windows/packing, mixtures, synthetic streams.

    # this process's block of each global batch: slmjax.train.sharding.process_rows(mesh, B)
    pipeline = build_pipeline(config, slot, slots)
    it = pipeline.train_iter()          # Grain iterator; it.get_state() goes in checkpoints
    batch = next(it)                    # dict of int32 [B/slots, T] inputs/targets (+ packed fields)
    for ev in pipeline.evals: ev.batches(B)   # held-out test split of each dataset
"""

from slmjax.data.errors import DataError
from slmjax.data.manifest import UnitDataset, load_manifest, open_dataset
from slmjax.data.synthetic import NGramModel, synthetic_dataset

# The pipeline (Grain) is loaded on first use, so that importing slmjax.data or a submodule (the
# config check builds the synthetic n-gram model) needs no Grain: the GPU image that
# tools/device_bench.sh runs on has none.
_PIPELINE = ("DataPipeline", "EvalSet", "TrainBatches", "build_pipeline", "mixture_line",
             "open_datasets")


def __getattr__(name):
    if name in _PIPELINE:
        from slmjax.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
