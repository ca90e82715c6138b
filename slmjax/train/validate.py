"""Config resolution and validation, before any compute: one clear line per problem."""

from __future__ import annotations

import math

from slmjax.fileio import url_problem
from slmjax.model import ModelConfig

MODEL_FIELDS = tuple(f for f in ModelConfig.__dataclass_fields__)


class ConfigError(ValueError):
    """An invalid training config; the message has one line per problem, naming the field."""


def model_config(config) -> ModelConfig:
    """The ModelConfig of a training config (`config.model.*`, `size` is informational)."""
    fields = {k: config.model[k] for k in MODEL_FIELDS if k in config.model}
    fields["hidden_dim"] = fields.get("hidden_dim") or None
    return ModelConfig(**fields)


def batch_tokens(config) -> int:
    return int(config.train.batch_size) * int(config.data.seq_len)


def total_steps(config) -> int:
    """Updates of the run: train.steps, or ceil(train.tokens / tokens per update)."""
    if config.train.steps > 0:
        return int(config.train.steps)
    return max(1, math.ceil(config.train.tokens / batch_tokens(config)))


def mesh_shape(config, n_devices: int) -> dict[str, int]:
    """Resolved mesh axis sizes (-1 = the remaining devices); raises ConfigError if impossible."""
    mesh = config["mesh"]
    axes = {a: int(mesh[a]) for a in ("data", "fsdp", "tensor")}
    fixed = math.prod(v for v in axes.values() if v != -1)
    free = [a for a, v in axes.items() if v == -1]
    bad = [f"mesh.{a}={v} must be positive or -1" for a, v in axes.items() if v == 0 or v < -1]
    if len(free) > 1:
        bad.append(f"only one mesh axis may be -1, got {', '.join('mesh.' + a for a in free)}")
    if bad:
        raise ConfigError("\n".join(bad))
    if free:
        if n_devices % fixed:
            raise ConfigError(f"mesh {axes} cannot fill {n_devices} device{'s' * (n_devices != 1)}: "
                              f"{fixed} does not divide it")
        axes[free[0]] = n_devices // fixed
    elif fixed != n_devices:
        raise ConfigError(f"mesh data*fsdp*tensor = {axes['data']}*{axes['fsdp']}*{axes['tensor']} "
                          f"= {fixed} does not match the {n_devices} available devices")
    return axes


# train fields that must be >= 0, with what 0 means.
_TRAIN_AT_LEAST_0 = {"steps": " (0 = derived from train.tokens)", "tokens": " (0 = train.steps)",
                     "warmup_min": "", "warmup_max": "", "weight_decay": "",
                     "final_eval_batches": " (0 = the whole held-out split)",
                     "peak_flops": " (0 = automatic)"}


def problems(config, n_devices: int | None = None) -> list[str]:
    """Every problem of the config, one line each (empty when valid)."""
    out = []
    unknown = sorted(set(config.model) - set(MODEL_FIELDS) - {"size"})
    if unknown:
        out.append(f"unknown model field(s): {', '.join('model.' + k for k in unknown)}")
    try:
        cfg = model_config(config)
    except TypeError as e:
        return out + [f"model config: {e}"]
    model_problems = cfg.problems()
    out += model_problems
    for name in ("dtype", "param_dtype"):
        if getattr(cfg, name) == "float16":
            out.append(f"model.{name}=float16 cannot train here: float16 gradients need loss "
                       "scaling, which slmjax does not do (use bfloat16)")
    t, d = config.train, config.data
    if d.kind not in ("synthetic", "units"):
        out.append(f"data.kind={d.kind!r} is not one of synthetic, units")
    if d.kind == "units" and not d.path:
        out.append("data.path is empty but data.kind=units needs a unit dataset directory")
    out += [m for m in (url_problem(p, "data.path") for p in str(d.path).split(",")) if m]
    if d.mode not in ("windows", "packed"):
        out.append(f"data.mode={d.mode!r} is not one of windows, packed")
    if not 0 < d.seq_len <= cfg.max_seq_len:
        out.append(f"data.seq_len={d.seq_len} must be in 1..model.max_seq_len={cfg.max_seq_len}")
    if t.batch_size <= 0:
        out.append(f"train.batch_size={t.batch_size} must be positive")
    if t.micro_batches <= 0:
        out.append(f"train.micro_batches={t.micro_batches} must be positive")
    elif t.batch_size % t.micro_batches:
        out.append(f"train.batch_size={t.batch_size} is not divisible by "
                   f"train.micro_batches={t.micro_batches}")
    # Written `not ok` so that NaN fails each check; inf is refused too.
    for name, note in _TRAIN_AT_LEAST_0.items():
        if not (t.get(name, 0) >= 0 and math.isfinite(t.get(name, 0))):
            out.append(f"train.{name}={t[name]} must be a number >= 0{note}")
    for name in ("lr", "eps", "clip_norm", "log_every", "eval_every", "eval_batches"):
        if not (t[name] > 0 and math.isfinite(t[name])):
            out.append(f"train.{name}={t[name]} must be a positive number")
    if t.steps == 0 and t.tokens == 0:
        out.append("train.steps and train.tokens are both 0: set one of them")
    if t.lr > 0 and not 0 <= t.min_lr <= t.lr:
        out.append(f"train.min_lr={t.min_lr} must be in 0..train.lr={t.lr}")
    if not 0 <= t.warmup_frac <= 1:
        out.append(f"train.warmup_frac={t.warmup_frac} must be in [0, 1]")
    for name in ("b1", "b2"):
        if not 0 <= t[name] < 1:
            out.append(f"train.{name}={t[name]} must be in [0, 1)")
    out += _data_run_problems(config)
    if not out and t.get("profile_start", -1) > total_steps(config):  # needs a valid batch
        out.append(f"train.profile_start={t.profile_start} is past the run's last step "
                   f"({total_steps(config)}): no trace would be recorded")
    seed = config.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        out.append(f"seed={seed!r} must be an integer >= 0")
    if int(config.mesh.get("cpu_devices", 0)) < 0:
        out.append(f"mesh.cpu_devices={config.mesh.cpu_devices} must be >= 0 (0 = one per core)")
    if n_devices is not None:
        try:
            axes = mesh_shape(config, n_devices)
        except ConfigError as e:
            return out + str(e).splitlines()
        if cfg.n_heads > 0 and cfg.n_heads % axes["tensor"]:
            out.append(f"mesh.tensor={axes['tensor']} does not divide model.n_heads={cfg.n_heads}")
        if not model_problems:
            if cfg.ffn_dim % axes["tensor"]:
                out.append(f"mesh.tensor={axes['tensor']} does not divide the FFN hidden size "
                           f"{cfg.ffn_dim}")
            out += _attention_problems(cfg, int(config.data.seq_len))
        shards = axes["data"] * axes["fsdp"]
        if t.micro_batches > 0 and t.batch_size > 0 and t.batch_size % t.micro_batches == 0 \
                and (t.batch_size // t.micro_batches) % shards:
            out.append(f"train.batch_size={t.batch_size} / train.micro_batches={t.micro_batches} "
                       f"is not divisible by the {shards} batch shards (mesh.data * mesh.fsdp)")
    return out


def _attention_problems(cfg, seq_len: int = 2) -> list[str]:
    """cuDNN attention needs a GPU and 16-bit q, k, v; splash a TPU (checked where the run's JAX
    is up, or under slmjax.model.platform.target for a deviceless compilation)."""
    from slmjax.model import platform
    from slmjax.model.config import resolve_dtype

    backend = platform.backend()
    if cfg.attention == "splash" and backend != "tpu":
        return [f"model.attention=splash needs a TPU; this run is on {backend}"]
    if cfg.attention != "cudnn":
        return []
    if backend != "gpu":
        return [f"model.attention=cudnn needs a GPU; this run is on {backend}"]
    if resolve_dtype(cfg.dtype) not in ("bfloat16", "float16"):
        return [f"model.attention=cudnn needs model.dtype bfloat16 or auto, got {cfg.dtype}"]
    from slmjax.model.attention import cudnn_shape_problem
    why = cudnn_shape_problem(cfg.dim // max(cfg.n_heads, 1), seq_len)
    if why:
        return [f"model.attention=cudnn cannot take these shapes ({why}); use model.attention=auto "
                "(XLA's attention there) or xla"]
    return []


def _data_run_problems(config) -> list[str]:
    """Fields read by the data pipeline, the loop and the checkpointer."""
    out, d, t, ck = [], config.data, config.train, config.checkpoint
    sy = d.get("synthetic")
    if d.kind == "synthetic" and sy is not None:
        for name in ("train_tokens", "test_tokens", "mean_utterance", "concentration",
                     "support"):
            if not sy.get(name, 1) > 0:
                out.append(f"data.synthetic.{name}={sy[name]} must be positive")
        if not 1 <= sy.get("order", 1) <= 3:
            out.append(f"data.synthetic.order={sy.order} must be 1, 2 or 3")
        if sy.get("concentration", 0.5) == math.inf:  # a Dirichlet(inf) draw is NaN
            out.append(f"data.synthetic.concentration={sy.concentration} must be finite")
    vocab = config.model.get("vocab_size", 502)
    if d.kind == "synthetic" and 0 < vocab < 3:
        out.append(f"model.vocab_size={vocab} leaves data.kind=synthetic no unit (its ids are the "
                   "units, then EOS and PAD): it must be >= 3")
    elif d.kind == "synthetic" and vocab > 0 and not out:
        out += _synthetic_model_problems(config)
    if not 0 < d.get("holdout", 0.01) < 1:
        out.append(f"data.holdout={d.holdout} must be in (0, 1)")
    u = d.get("max_unique_tokens", 0)
    if not isinstance(u, int) or isinstance(u, bool) or u < 0:
        out.append(f"data.max_unique_tokens={u!r} must be an integer >= 0 (0 = all the data)")
    elif 0 < u < d.seq_len + 1:
        out.append(f"data.max_unique_tokens={u} is less than one window of data.seq_len+1 = "
                   f"{d.seq_len + 1} tokens")
    if d.get("num_threads", 0) < 0 or d.get("prefetch", 0) < 0:
        out.append("data.num_threads and data.prefetch must be >= 0")
    if d.weights and d.kind == "units":
        n_paths = len([p for p in str(d.path).split(",") if p.strip()])
        try:
            w = [float(x) for x in str(d.weights).split(",")]
        except ValueError:
            w = None
        if w is None or len(w) != n_paths or min(w) < 0 or sum(w) <= 0:
            out.append(f"data.weights={d.weights!r} must be {n_paths} non-negative numbers "
                       "joined by ',' (one per data.path entry)")
    if t.get("profile_steps", 1) <= 0:
        out.append(f"train.profile_steps={t.profile_steps} must be positive")
    if not (t.get("profile_start", -1) == -1 or t.profile_start >= 1):
        out.append(f"train.profile_start={t.profile_start} must be a step >= 1, or -1 (none)")
    if ck.every_steps < 0:
        out.append(f"checkpoint.every_steps={ck.every_steps} must be >= 0 (0 = only at the end)")
    if ck.keep < 1:
        out.append(f"checkpoint.keep={ck.keep} must be >= 1")
    if ck.keep_every < 0:
        out.append(f"checkpoint.keep_every={ck.keep_every} must be >= 0")
    return out


def _synthetic_model_problems(config) -> list[str]:
    """The n-gram model's own checks (its table size, mean_utterance), which the data pipeline
    makes when it builds the stream: here they are one line before compute and in --dry_run."""
    from slmjax.data.synthetic import NGramModel

    sy = config.data.get("synthetic") or {}
    try:  # the tables are built lazily: this only runs the checks
        NGramModel(n_units=int(config.model.vocab_size) - 2, order=int(sy.get("order", 1)),
                   support=int(sy.get("support", 16)),
                   concentration=float(sy.get("concentration", 0.5)),
                   mean_utterance=float(sy.get("mean_utterance", 50.0)))
    except ValueError as e:
        line = str(e).strip().splitlines()[0]
        return [line if line.startswith("data.") else f"data.synthetic: {line}"]
    return []


def validate(config, n_devices: int | None = None) -> None:
    """Raise ConfigError listing every problem (one line each) when the config is invalid; log a
    warning for a valid layout that wastes the mesh (see layout_warnings)."""
    found = problems(config, n_devices)
    if found:
        raise ConfigError("\n".join(found))
    if n_devices is not None:
        from absl import logging

        for line in layout_warnings(model_config(config), mesh_shape(config, n_devices)):
            logging.warning(line)


def layout_warnings(cfg: ModelConfig, axes: dict) -> list[str]:
    """Valid but wasteful: an fsdp size that does not divide the width leaves every weight (and
    its AdamW state) whole on each device, so FSDP saves no memory."""
    if axes["fsdp"] > 1 and cfg.dim % axes["fsdp"]:
        return [f"mesh.fsdp={axes['fsdp']} does not divide model.dim={cfg.dim}: every weight and its "
                "optimizer state stay replicated over fsdp (no memory saved); choose an fsdp size "
                "that divides it"]
    return []


def run_plan(config, n_devices: int) -> dict:
    """What a run will do: sizes, FLOPs per token, steps, tokens, mesh (the --dry_run JSON)."""
    from slmjax.model import count_params
    from slmjax.train.flops import flops_per_token
    from slmjax.train.optim import warmup_steps

    cfg = model_config(config)
    total, nonemb = count_params(cfg)
    steps = total_steps(config)
    return {
        "size": config.model.get("size", ""),
        "n_params": total,
        "n_params_nonemb": nonemb,
        "flops_per_token": flops_per_token(cfg, int(config.data.seq_len)),
        "steps": steps,
        "warmup_steps": warmup_steps(config, steps),
        "tokens": steps * batch_tokens(config),
        "batch_tokens": batch_tokens(config),
        "batch_size": int(config.train.batch_size),
        "micro_batches": int(config.train.micro_batches),
        "seq_len": int(config.data.seq_len),
        "mesh": mesh_shape(config, n_devices),
    }
