"""``slmjax-units``: ``fit`` a tokenizer, ``encode`` audio into a unit dataset, ``merge`` worker outputs.

  slmjax-units fit --audio=SRC --out=TOKDIR [--features=mfcc|hubert] [--k=K] [--coarse=unigram]
  slmjax-units encode --tokenizer=TOKDIR --audio=SRC --out=DATASET [--num_workers=N --worker_index=I]
  slmjax-units merge --tokenizer=TOKDIR --audio=SRC --out=DATASET

SRC: a folder (recursive wav/flac/ogg/mp3), a fairseq .tsv or a .jsonl manifest, an audio file,
``tfds:NAME[/CONFIG]:SPLIT[@RATE]`` (with --data_dir; @RATE in Hz where the dataset records no
sample rate), or several of these joined by commas.
"""

from __future__ import annotations

import sys

from absl import app, flags

from slmjax import cli_help, hostalloc
from slmjax.units.errors import UnitsError

FLAGS = flags.FLAGS
COMMANDS = ("fit", "encode", "merge")

cli_help.DEFINE_path("audio", None, "Audio source(s): folder, .tsv, .jsonl, audio file or tfds:NAME[/CONFIG]:SPLIT[@RATE]; comma-separated.",
                     comma_separated=True)
cli_help.DEFINE_path("out", None, "fit: tokenizer directory to write; encode/merge: unit dataset directory.")
cli_help.DEFINE_path("tokenizer", None, "encode/merge: tokenizer directory written by `fit`.")
cli_help.DEFINE_path("data_dir", None, "TFDS data_dir for tfds: sources.")
flags.DEFINE_float("holdout", 0.01, "Fraction held out as the 'test' split (hashed by utterance id) when the source has no splits.")
# fit
flags.DEFINE_enum("features", "mfcc", ["mfcc", "hubert"], "fit: feature extractor.")
flags.DEFINE_integer("k", None, "fit: number of k-means units (default 100 for mfcc as HuBERT iteration 1, 500 for hubert).")
flags.DEFINE_integer("seed", 0, "fit: seed for the fitting subset, k-means++ and mini-batches.")
flags.DEFINE_enum("kmeans_method", "lloyd", ["lloyd", "minibatch"], "fit: k-means updates.")
flags.DEFINE_integer("kmeans_iters", 100, "fit: maximum Lloyd iterations (or mini-batch steps).")
flags.DEFINE_integer("kmeans_batch", 10000, "fit: mini-batch size.")
flags.DEFINE_integer("max_frames", 1_000_000, "fit: at most this many feature frames fit k-means: whole files in the seeded order of --fit_hours, the last one cut (bounds memory; 1M MFCC frames are ~2.8 h).")
flags.DEFINE_float("fit_hours", 10.0, "fit: at most this many hours of training-split audio (seeded order) are read.")
cli_help.DEFINE_path("kmeans_file", None, "fit: import centroids from an sklearn/joblib k-means file (e.g. TWIST km500) instead of fitting.")
flags.DEFINE_bool("mfcc_norm", False, "fit: per-utterance mean/variance normalisation of MFCC features.")
cli_help.DEFINE_path("hubert_checkpoint", None, "fit: HF HubertModel directory/file (safetensors or torch) or fairseq checkpoint.")
flags.DEFINE_integer("hubert_layer", 11, "fit: transformer layer whose output is the feature (HF hidden_states index; the paper used 11).")
flags.DEFINE_float("chunk_seconds", 30.0, "fit: HuBERT runs over chunks of at most this many seconds.")
flags.DEFINE_enum("coarse", "none", ["none", "unigram", "bpe"], "fit: SentencePiece coarse tokens over unit sequences.")
flags.DEFINE_integer("coarse_vocab", 5000, "fit: coarse vocabulary size (the paper used 5000).")
# encode
flags.DEFINE_integer("num_workers", 1, "encode: number of workers (hosts) sharing the work.")
flags.DEFINE_integer("worker_index", 0, "encode: this worker's index in [0, num_workers).")
flags.DEFINE_integer("shard_utterances", 2000, "encode: utterances per ArrayRecord shard.")
flags.DEFINE_float("min_seconds", 0.0, "encode: skip audio shorter than this (always skipped below one feature frame).")
flags.DEFINE_bool("synthetic", False, "encode: mark the dataset as synthetic (TTS) speech in the manifest.")
flags.DEFINE_bool("durations", False, "encode: also write per-unit durations (frames) in *.durations.array_record shards.")


def _require(*names):
    for name in names:
        if not getattr(FLAGS, name):
            raise UnitsError(f"--{name} is required")


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: slmjax-units {{{','.join(COMMANDS)}}} --flags (see --help)")
    try:
        if argv[1] == "fit":
            _require("audio", "out")
            from slmjax.units.fit import fit_from_flags

            fit_from_flags(FLAGS)
        else:
            _require("audio", "out", "tokenizer")
            from slmjax.units.encode import encode_from_flags

            encode_from_flags(FLAGS, merge_only=argv[1] == "merge")
    except UnitsError as exc:
        print(f"slmjax-units: error: {exc}", file=sys.stderr)
        sys.exit(1)


def run():
    """Console entry point."""
    hostalloc.use_fast_allocator()  # XLA's per-call temporaries (HuBERT, k-means) stay mapped
    cli_help.adopt(__name__)
    app.run(main)


if __name__ == "__main__":
    run()
