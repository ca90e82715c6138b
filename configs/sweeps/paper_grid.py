"""The study's grid (Cuervo & Marxer 2024): 5 sizes x D/N in {2..100}, plus multi-epoch runs.

    slmjax-sweep --config=configs/sweeps/paper_grid.py --root=/mnt/gcs/runs/paper_grid \
        --config.data_path=/mnt/gcs/units/hubert25hz_k500 --dry_run

Every run trains `configs/train.py:<size>` with the paper's batch size for its size, a token budget
D, and steps = ceil(D / (batch_size * 2050)), so that its LR schedule (linear warm-up over
max(100, 1% of steps) as configs/train.py defines it, then cosine to 5e-5) ends exactly at its
budget. Compute C = 6ND with N the total parameter count (tied embedding once): about 5e15 to 4e20
FLOPs over the 52 runs.
"""

import ml_collections

# The paper's batch sizes, in sequences of 2050 units per update (PAPER.md).
BATCH_SIZES = {"s20m": 64, "s85m": 128, "s155m": 256, "s309m": 252, "s823m": 456}


# Layouts for a TPU slice or GPU nodes, `--config=configs/sweeps/paper_grid.py:LAYOUT`: the sizes
# whose paper batch does not fit the devices' memory at one pass, or does not divide them, get a
# mesh and gradient accumulation (same updates) that tools/compile_step.py compiled to fit with 10%
# of the memory free (README, Sweeps): `tools/compile_step.py --tpu=SLICE (or --gpu=h100:2x8)
# --mesh=search --micro_batches=0` finds them.
LAYOUTS = {
    # 16 chips x 32 GiB. s20m, s85m and s155m fit as they are (at most 20.5 GiB per chip). s309m's
    # 252 over 4 FSDP x 4 tensor shards in 3 micro-batches: 20.7 GiB. s823m over 8 x 2 in 19
    # micro-batches: batch 456 and 608 fit; 494 (D/N 64) does not divide 8 shards: leave it out.
    "v4-32": {
        "s309m": {"mesh": {"fsdp": 4, "tensor": 4}, "train": {"micro_batches": 3}},
        "s823m": {"mesh": {"fsdp": 8, "tensor": 2}, "train": {"micro_batches": 19}},
    },
    # 16 chips x 16 GiB (v5litepod-16). s20m and s85m fit as they are (1.8 and 8.6 GiB). s155m in 2
    # micro-batches: 11.8 GiB (1 asks 16.4). s309m over 4 x 4 in 7: 10.7 GiB (3 leave under 10%
    # free). s823m over 8 x 2 in 19: 8.2 and 10.2 GiB at batch 456 and 608; 494 does not divide.
    "v5e-16": {
        "s155m": {"train": {"micro_batches": 2}},
        "s309m": {"mesh": {"fsdp": 4, "tensor": 4}, "train": {"micro_batches": 7}},
        "s823m": {"mesh": {"fsdp": 8, "tensor": 2}, "train": {"micro_batches": 19}},
    },
    # 2 nodes x 8 GPUs of 80 GB (JAX's default pool: 75%, 59.7 GiB). s20m, s85m and s155m fit as
    # they are (at most 14.3 GiB). s309m's 252 over 4 x 4 in 3 micro-batches: 19.3 GiB (1 leaves
    # under 10% free). s823m over 2 FSDP x 8 tensor shards (a node each) in 19: the fewest tensor
    # shards whose FSDP shards split all three of its batches (456, 494, 608): 13.1 to 17.0 GiB.
    # All 52 runs.
    "h100-2x8": {
        "s309m": {"mesh": {"fsdp": 4, "tensor": 4}, "train": {"micro_batches": 3}},
        "s823m": {"mesh": {"fsdp": 2, "tensor": 8}, "train": {"micro_batches": 19}},
    },
}


def get_config(arg=None):
    if arg and arg not in LAYOUTS:
        raise ValueError(f"no layout {arg!r}; known: {', '.join(LAYOUTS)}")
    c = ml_collections.ConfigDict()
    c.name = "paper_grid"
    # Training config every run starts from: `<train_config>:<size>` (relative to the repo root).
    c.train_config = "configs/train.py"
    # Unit dataset directory (or several joined by ','), passed to each run as data.path.
    c.data_path = ""
    c.require_data_path = True  # launching without data_path is an error (a dry run only warns)
    # Tokens of one epoch of the training data (U), for the epochs column and the multi-epoch runs.
    # The paper's corpus: 10.89B deduplicated HuBERT units. 0: read from the dataset's manifest.json.
    c.unique_tokens = 10_890_000_000
    c.seq_len = 2050  # context length of every run (data.seq_len)
    # Single-epoch grid: D = ratio * N for every size and ratio.
    c.ratios = (2, 4, 8, 10, 20, 32, 64, 100)
    c.sizes = ml_collections.ConfigDict()
    for name, batch in BATCH_SIZES.items():
        c.sizes[name] = ml_collections.ConfigDict(dict(
            batch_size=batch,       # global sequences per update
            train_arg=name,         # the argument of configs/train.py's get_config
            overrides={},           # extra --config.* overrides for this size only (nested dict)
        ))
    for name, over in LAYOUTS.get(arg, {}).items():
        c.sizes[name].overrides = over
    # The 823M model's two longest runs used larger batches (494 and 608 sequences).
    c.sizes.s823m.batch_size_by_ratio = ((64, 494), (100, 608))
    # Multi-epoch runs: D = epochs * U for these sizes, to fit the data-constrained terms.
    c.multi_epoch = ml_collections.ConfigDict(dict(
        sizes=("s20m", "s85m", "s155m"),
        epochs=(2, 4, 8, 10),
        # U for these runs. 0: the whole dataset (unique_tokens). A positive value restricts each
        # run to the first U unique tokens of the data (data.max_unique_tokens).
        unique_tokens=0,
    ))
    # --config.* overrides for every run (nested dict, e.g. {"checkpoint": {"every_steps": 1000}}).
    c.overrides = ml_collections.ConfigDict()
    c.key_prefix = ""  # prepended to every run key
    return c
