"""The study's design at CPU scale: the grid `make demo` trains on a 2-core CPU.

    slmjax-sweep --config=configs/sweeps/cpu_mini.py --root=runs/mini [--config.data_path=UNITS]

Four sizes (10K, 30K, 113K and 231K parameters with 102 unit ids: a 23x range of N), each at its
own D/N ratios: the two small ones run far past D/N = 20 (5, 20, 100), where their loss flattens
towards a size-limited floor and so pins the N term; 113K at (5, 20, 40) and 231K at (5, 20), so
that no single-epoch budget exceeds the demo's 36-hour corpus (~5.0M training units). Plus the 30K
model for 2 and 4 epochs of its first 1M units: 13 runs, each with steps =
ceil(D / (batch_size * 128)) so that its schedule (configs/train.py:tiny's warm-up rule, then
cosine) ends at its budget. Sizes are configs/train.py:tiny with smaller dims (head_dim 16-32,
SwiGLU hidden rounded to 32) and, as small models take, a larger peak LR (3e-3, to 3e-4: the
paper's 10x decay). Without data_path the runs train on a synthetic bigram unit stream of 6M
training tokens (learnable at this scale: the losses fall from the unigram entropy towards the
stream's entropy rate, further for larger N and D).

Why these ratios: at this scale every model is still far from converged at D/N = 20 and the loss
depends mostly on the number of updates, so a grid of D/N <= 20 at equal ratios for every size
cannot tell the N term from the D term (the law's alpha ran to its grid edge).
"""

import ml_collections

# name: (dim, n_layers, n_heads, batch_size, D/N ratios)
SIZES = {
    "m10k": (16, 2, 1, 16, (5, 20, 100)),
    "m30k": (32, 2, 1, 16, (5, 20, 100)),
    "m110k": (64, 2, 2, 32, (5, 20, 40)),
    "m230k": (96, 2, 3, 32, (5, 20)),
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
    c.ratios = (5, 20)  # D/N of a size that names no ratios of its own
    c.sizes = ml_collections.ConfigDict()
    for name, (dim, layers, heads, batch, ratios) in SIZES.items():
        c.sizes[name] = ml_collections.ConfigDict(dict(
            batch_size=batch, train_arg="tiny", ratios=ratios,
            overrides={"model": {"dim": dim, "n_layers": layers, "n_heads": heads,
                                 "multiple_of": 32}}))
    c.multi_epoch = ml_collections.ConfigDict(dict(
        sizes=("m30k",), epochs=(2, 4),
        # > 0 restricts these runs to their first U tokens (data.max_unique_tokens); 0: all the data
        unique_tokens=1_000_000,
    ))
    c.overrides = ml_collections.ConfigDict({
        # 100 MFCC k-means units + EOS + PAD (a data_path's manifest.json replaces it).
        "model": {"vocab_size": 102},
        "train": {"lr": 3e-3, "min_lr": 3e-4},
        # Used only without data_path: a bigram stream the tiny models can learn.
        "data": {"synthetic": {"order": 1, "train_tokens": 6_000_000}},
    })
    c.key_prefix = ""
    return c
