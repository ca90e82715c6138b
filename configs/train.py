"""Training configs: `--config=configs/train.py:SIZE` with SIZE one of s20m s85m s155m s309m s823m
(the paper's sizes and batch sizes) or `tiny` (trains in seconds on CPU).

Override any field on the command line, e.g. `--config.train.steps=100 --config.mesh.fsdp=4`.
"""

import ml_collections

# The paper's global batch (sequences of 2050 tokens per update) for each size.
PAPER_BATCH = {"s20m": 64, "s85m": 128, "s155m": 256, "s309m": 252, "s823m": 456}
# Layers / width / heads of each size (mirrors slmjax.model.MODEL_SIZES; kept here so that this
# file reads alone).
SIZES = {
    "s20m": (6, 512, 8),
    "s85m": (12, 768, 12),
    "s155m": (12, 1024, 16),
    "s309m": (24, 1024, 16),
    "s823m": (16, 2048, 32),
    "tiny": (2, 128, 2),
}


def get_config(arg: str = "s20m") -> ml_collections.ConfigDict:
    size = (arg or "s20m").strip()
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r} in --config=configs/train.py:SIZE; "
                         f"known: {', '.join(SIZES)}")
    tiny = size == "tiny"
    c = ml_collections.ConfigDict()
    c.seed = 0  # one seed drives parameter init, data order and everything random

    m = c.model = ml_collections.ConfigDict()
    m.size = size  # name of the size preset (informational once the fields below are set)
    m.n_layers, m.dim, m.n_heads = SIZES[size]  # depth, width, attention heads (head_dim = dim/heads)
    m.vocab_size = 502  # unit vocabulary incl. EOS and PAD (the paper: 500 units + 2); must match data
    m.hidden_dim = 0  # SwiGLU hidden size; 0 = the paper's rule 256 * ceil(int(8 * dim / 3) / 256)
    m.multiple_of = 256  # rounding multiple of the SwiGLU hidden-size rule
    m.norm_eps = 1e-5  # RMSNorm epsilon (RMSNorm is computed in float32)
    m.rope_theta = 10000.0  # RoPE base (interleaved-pair convention)
    m.max_seq_len = 2050  # context length the model is built for (the paper: 2050)
    m.init_std = 0.02  # N(0, init_std) init; w3 and wo use init_std / sqrt(2 * n_layers)
    m.param_dtype = "float32"  # storage dtype of parameters (and so of the optimizer state)
    m.dtype = "auto"  # matmul compute dtype: auto = float32 on CPU, bfloat16 on GPU/TPU
    m.attention = "auto"  # auto | xla | cudnn | blockwise | splash (auto: cuDNN on GPU, splash on TPU, blockwise on CPU)
    m.attention_block = 512  # query block of the blockwise (CPU) and largest block of the splash (TPU) attention
    m.remat = "none"  # per-block rematerialisation: none | full | dots | dots_no_batch

    d = c.data = ml_collections.ConfigDict()
    d.kind = "synthetic"  # synthetic (generated unit stream, no files) | units (unit datasets)
    d.path = ""  # unit dataset directory, or several joined by ","
    d.weights = ""  # mixture weights, one per path joined by ","; empty = proportional to tokens
    d.max_unique_tokens = 0  # U: train on the first U tokens of the training stream only (records
    # in shard order, the last one cut at U; a mixture splits U by data.weights); a run of
    # D = e * U tokens then makes e epochs (data-constrained runs). 0 = all the training data
    d.mode = "windows"  # windows (paper: random windows of a concatenated stream) | packed
    d.seq_len = 128 if tiny else 2050  # tokens per training example (inputs); <= model.max_seq_len
    d.test_split = "test"  # manifest split that gives the held-out test loss; when a dataset
    d.holdout = 0.01  # has none, this fraction of its training utterances is held out instead
    d.num_threads = 2  # Grain threads preparing batches ahead of the step
    d.prefetch = 4  # batches prepared ahead
    sy = d.synthetic = ml_collections.ConfigDict()  # data.kind=synthetic: a random n-gram stream
    sy.train_tokens = 1_000_000  # tokens of its training split
    sy.test_tokens = 50_000  # tokens of its held-out split
    sy.order = 1  # the next unit depends on this many previous symbols (1..3)
    sy.support = 16  # units that may follow each context (drawn at random per context)
    sy.concentration = 0.5  # Dirichlet concentration over those units (small = peaky)
    sy.mean_utterance = 50.0  # mean utterance length in units (EOS ends each)

    t = c.train = ml_collections.ConfigDict()
    t.batch_size = 16 if tiny else PAPER_BATCH[size]  # global sequences per update
    t.micro_batches = 1  # gradient accumulation: the batch is split into this many micro-batches
    t.steps = 200 if tiny else 0  # updates; 0 = derived from train.tokens
    t.tokens = 0 if tiny else 20 * _n_params(*SIZES[size])  # token budget (default D/N = 20)
    t.lr = 5e-4  # peak learning rate
    t.min_lr = 5e-5  # final learning rate, reached exactly on the last update
    t.warmup_min = 10 if tiny else 100  # warm-up is max(warmup_min, warmup_frac * steps) updates ...
    t.warmup_frac = 0.01  # ... (fraction of all updates) ...
    t.warmup_max = 1000  # ... capped at warmup_max (the release's cap)
    t.b1 = 0.9  # AdamW beta1
    t.b2 = 0.95  # AdamW beta2
    t.eps = 1e-8  # AdamW epsilon
    t.weight_decay = 0.1  # decoupled weight decay, on parameters with ndim >= 2 only
    t.clip_norm = 1.0  # global gradient-norm clip
    t.log_every = 10 if tiny else 50  # steps between metrics.jsonl rows
    t.eval_every = 100 if tiny else 1000  # steps between test-loss evaluations (and at the end)
    # Batches of the held-out split per periodic evaluation (evaluated one micro-batch of rows
    # per step, as training is: train.micro_batches).
    t.eval_batches = 4 if tiny else 20
    # Batches for the final evaluation, whose loss run.json records and the scaling fits read;
    # 0 = the whole held-out split (every run of a sweep then scores the same tokens).
    t.final_eval_batches = 0
    t.progress = True  # tqdm progress bar
    t.peak_flops = 0.0  # peak FLOP/s per device for MFU; 0 = device table (measured on CPU)
    t.profile_start = -1  # step at which a JAX profiler trace starts (-1 = none) ...
    t.profile_steps = 5  # ... and how many steps it covers (written to WORKDIR/profile)

    mesh = c.mesh = ml_collections.ConfigDict()
    mesh.data = 1  # pure data-parallel replicas
    mesh.fsdp = -1  # FSDP shards of parameters/optimizer state (batch too); -1 = remaining devices
    mesh.tensor = 1  # tensor (Megatron) shards of heads and FFN hidden; must divide n_heads
    # On a CPU-only host: JAX devices to split it into (slmjax.hostdevices; faster than one device).
    # 0 = auto: one per core, as many as divide the batch per update, and, with the axes above left
    # at 1 / -1, along `data`; 1 = one device. XLA_FLAGS=--xla_force_host_platform_device_count wins.
    mesh.cpu_devices = 0

    ck = c.checkpoint = ml_collections.ConfigDict()
    ck.every_steps = 50 if tiny else 1000  # steps between checkpoints (and one at the end)
    ck.keep = 3  # latest checkpoints kept
    ck.keep_every = 0  # also keep every checkpoint whose step is a multiple of this; 0 = none
    ck.async_save = True  # write checkpoints in the background
    return c


def _n_params(n_layers: int, dim: int, _heads: int, vocab: int = 502) -> int:
    hidden = 256 * -(-int(8 * dim / 3) // 256)
    return n_layers * (4 * dim * dim + 3 * dim * hidden + 2 * dim) + dim + vocab * dim
