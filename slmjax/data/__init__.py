"""slmjax.data: unit datasets (ArrayRecord via Grain), windows/packing, mixtures, synthetic streams.

    pipeline = build_pipeline(config, jax.process_index(), jax.process_count())
    it = pipeline.train_iter()          # Grain iterator; it.get_state() goes in checkpoints
    batch = next(it)                    # dict of int32 [B/P, T] inputs/targets (+ packed fields)
    for ev in pipeline.evals: ev.batches(B)   # held-out test split of each dataset
"""

from slmjax.data.errors import DataError
from slmjax.data.manifest import UnitDataset, load_manifest, open_dataset
from slmjax.data.pipeline import DataPipeline, EvalSet, TrainBatches, build_pipeline, open_datasets
from slmjax.data.synthetic import NGramModel, synthetic_dataset
