"""The study's design at CPU scale: the grid `make demo` trains on a 2-core CPU.

    slmjax-sweep --config=configs/sweeps/cpu_mini.py --root=runs/mini [--config.data_path=UNITS]

Three sizes (30K, 60K and 113K parameters with 102 unit ids) x D/N in {2, 8, 20}, plus the
smallest size for 2 and 4 epochs of the training data: 11 runs, each with steps =
ceil(D / (batch_size * 128)) so that its schedule (configs/train.py:tiny's warm-up rule, then
cosine) ends at its budget. Sizes are configs/train.py:tiny with smaller dims (head_dim 32 or 48,
SwiGLU hidden rounded to 32) and, as small models take, a larger peak LR (3e-3, to 3e-4: the
paper's 10x decay). Without data_path the runs train on a synthetic bigram unit stream of 500K
training tokens (learnable at this scale: the losses fall from the unigram entropy towards the
stream's entropy rate, further for larger N and D).
"""

import ml_collections

# name: (dim, n_layers, n_heads, batch_size)
SIZES = {
    "m30k": (32, 2, 1, 16),
    "m60k": (48, 2, 1, 16),
    "m110k": (64, 2, 2, 32),
}


def get_config(arg=None):
    del arg
    c = ml_collections.ConfigDict()
    c.name = "cpu_mini"
    c.train_config = "configs/train.py"  # every size starts from configs/train.py:tiny
    # Unit dataset directory (or several joined by ','); empty: the synthetic unit stream.
    c.data_path = ""
    c.unique_tokens = 0  # U: 0 = count the training split(s) (slmjax.data)
    c.seq_len = 128
    c.ratios = (2, 8, 20)
    c.sizes = ml_collections.ConfigDict()
    for name, (dim, layers, heads, batch) in SIZES.items():
        c.sizes[name] = ml_collections.ConfigDict(dict(
            batch_size=batch, train_arg="tiny",
            overrides={"model": {"dim": dim, "n_layers": layers, "n_heads": heads,
                                 "multiple_of": 32}}))
    c.multi_epoch = ml_collections.ConfigDict(dict(
        sizes=("m30k",), epochs=(2, 4),
        unique_tokens=0,  # 0: the whole training data; > 0 restricts to U tokens (data.max_unique_tokens)
    ))
    c.overrides = ml_collections.ConfigDict({
        # 100 MFCC k-means units + EOS + PAD (a data_path's manifest.json replaces it).
        "model": {"vocab_size": 102},
        "train": {"lr": 3e-3, "min_lr": 3e-4},
        # Used only without data_path: a bigram stream the tiny models can learn.
        "data": {"synthetic": {"order": 1, "train_tokens": 500_000}},
    })
    c.key_prefix = ""
    return c
