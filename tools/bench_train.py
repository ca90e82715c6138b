"""Training throughput and MFU of one config, with the machine's peak and a PyTorch baseline.

    python tools/bench_train.py --config=configs/train.py:s20m --batch_size=4 --steps=5

In one run: (a) the measured matmul peak of this machine (and the table peak on GPU/TPU),
(b) our jitted train step, (c) transformers' LlamaForCausalLM of the same shape with torch AdamW,
eager and under torch.compile. All rows run in one process with the same host allocator
(slmjax.hostalloc: tcmalloc when installed). Prints a table; the last line is one JSON object with
tokens_per_sec, mfu, baseline_tokens_per_sec. FLOPs: 6N + 12LHQT with causal attention counted
once (slmjax.train.flops), the same count for every row; `mfu_palm` counts the masked half too, as
the paper's release reports its MFU.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from absl import app, flags

import benchcli  # tools/, beside this script
from slmjax import cli_help, hostalloc, hostdevices

_CONFIG = cli_help.DEFINE_config_file("config", "configs/train.py:s20m", "Training config.")
_BATCH = flags.DEFINE_integer("batch_size", 4, "Global sequences per step (overrides the config).",
                              lower_bound=1)
_SEQ = flags.DEFINE_integer("seq_len", 0, "Tokens per sequence; 0 = config.data.seq_len.",
                            lower_bound=0)
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps (after warm-up steps).", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (compilation, caches).",
                               lower_bound=0)
_BASELINES = flags.DEFINE_list("baselines", ["eager", "compile"],
                               "PyTorch baselines to run: eager, compile (empty: none).")
benchcli.choices("baselines", ("eager", "compile"))
# No float16: the PyTorch baseline's autocast path is bfloat16 only.
_DTYPE = flags.DEFINE_enum("dtype", "auto", ["auto", "float32", "bfloat16"], "Compute dtype: auto "
                           "(float32 on CPU, bfloat16 on GPU/TPU), float32 or bfloat16; the PyTorch "
                           "baseline uses the same.")
_PROFILE = cli_help.DEFINE_path("profile_dir", "", "Write a JAX profiler trace of the timed steps here.")
# Peak measured before and after; steps are timed in interleaved rounds (ours, eager, compile, ...).


def _interleaved(runners: dict, steps: int, warmup: int) -> dict:
    """Median seconds per step of each runner, timed in rounds (one step of each per round) so that
    load from other jobs on a shared machine hits every implementation alike."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in runners}
    for _ in range(steps):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def ours_runner(config):
    """(run one training step, compile seconds) for our jitted sharded step."""
    import jax
    import numpy as np

    from slmjax.train import sharding
    from slmjax.train.mesh import make_mesh
    from slmjax.train.step import init_train_state, make_train_step

    mesh = make_mesh(config.mesh)
    state = init_train_state(config, mesh, jax.random.key(0))
    step_fn = make_train_step(config, mesh)
    b, t, v = config.train.batch_size, config.data.seq_len, config.model.vocab_size
    tokens = np.random.default_rng(0).integers(0, v, (b, t + 1)).astype(np.int32)
    batch = jax.device_put({"inputs": tokens[:, :-1], "targets": tokens[:, 1:]},
                           sharding.batch_sharding(mesh))
    holder = {"state": state}

    def run():
        holder["state"], metrics = step_fn(holder["state"], batch)
        jax.block_until_ready(metrics["loss"])

    t0 = time.perf_counter()
    run()
    return run, time.perf_counter() - t0


def torch_runner(cfg, batch, seq, dtype, compiled):
    """One training step of transformers' LlamaForCausalLM of the same shape + torch AdamW."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    # A float32 run: JAX's default precision runs f32 dots on A100/H100/H200 as TF32 (the table's
    # f32 peak); PyTorch's default is full FP32 on CUDA. TF32 for both (CUDA only; no effect on CPU).
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = "tf32"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.set_num_threads(hostdevices.host_cores())  # the cores JAX's CPU devices use (a CPU set)
    lc = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
                     num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                     num_key_value_heads=cfg.n_heads, max_position_embeddings=seq,
                     rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=True,
                     attention_bias=False, mlp_bias=False, attention_dropout=0.0)
    lc._attn_implementation = "sdpa"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = LlamaForCausalLM(lc).to(device)
    # As our optimizer (slmjax.train.optim): weight decay on parameters of ndim >= 2 only.
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=5e-4, betas=(0.9, 0.95), eps=1e-8)
    x = torch.randint(0, cfg.vocab_size, (batch, seq + 1), device=device)
    inputs, targets = x[:, :-1], x[:, 1:]
    amp = dtype == "bfloat16"

    def loss_fn(inp, tgt):
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            logits = model(input_ids=inp).logits
        return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tgt.flatten())

    fwd = torch.compile(loss_fn) if compiled else loss_fn

    def run():
        loss = fwd(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    run()  # first call (torch.compile compiles here)
    return run


def main(argv):
    del argv
    if [k for k in _BASELINES.value if k]:
        # JAX takes 75% of a GPU's memory at its first use, which left the PyTorch baseline in the
        # same process a quarter (20 GB of an 80 GB H100: too little for s309m or s823m, so the
        # baseline failed). Without preallocation each takes what it uses (set before JAX starts).
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    from slmjax.model.config import resolve_dtype
    from slmjax.train.flops import (flops_per_token, measured_matmul_peak, mfu, peak_devices,
                                    table_peak)
    from slmjax.train.mesh import adopt_cpu_split, request_cpu_split
    from slmjax.train.validate import ConfigError, model_config, validate

    config = _CONFIG.value
    config.train.batch_size = _BATCH.value
    if _SEQ.value:
        config.data.seq_len = _SEQ.value
        config.model.max_seq_len = max(config.model.max_seq_len, _SEQ.value)
    config.model.dtype = _DTYPE.value
    config.train.micro_batches = 1
    split = request_cpu_split(config)  # as slmjax-train: one CPU device per core
    adopt_cpu_split(config, split)
    try:
        validate(config, jax.device_count())
    except ConfigError as e:
        benchcli.fail(str(e))
    cfg = model_config(config)
    dtype = str(resolve_dtype(cfg.dtype))
    b, t = config.train.batch_size, config.data.seq_len
    fpt = flops_per_token(cfg, t)
    flop = fpt["6n_attn"]
    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    n_dev = peak_devices()  # CPU devices share the host's cores: its peak counts once
    measured = measured_matmul_peak(n=2048 if on_cpu else 8192, dtype=dtype)
    table = None if on_cpu else table_peak(device.device_kind, dtype)

    runners = {}
    run, compile_s = ours_runner(config)
    runners["ours"] = run
    for kind in [k for k in _BASELINES.value if k]:
        try:
            runners[kind] = torch_runner(cfg, b, t, dtype, kind == "compile")
        except Exception as e:  # a baseline that cannot run here is reported, not fatal
            print(f"baseline {kind} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    if _PROFILE.value:
        jax.profiler.start_trace(_PROFILE.value)
    secs = _interleaved(runners, _STEPS.value, _WARMUP.value)
    if _PROFILE.value:
        jax.profiler.stop_trace()
    ours_tps = b * t / secs["ours"]
    rows = [("slmjax (JAX, jit)", ours_tps, secs["ours"])]
    base = {k: b * t / s for k, s in secs.items() if k != "ours"}
    rows += [(f"PyTorch transformers Llama + AdamW ({k})", v, secs[k]) for k, v in base.items()]
    peak_after = measured_matmul_peak.__wrapped__(n=2048 if on_cpu else 8192, dtype=dtype)
    # Load from other jobs only ever lowers a measurement: the higher of the two is the peak.
    peak = max(measured, peak_after) if table is None else table
    print(f"\ndevice: {device.device_kind} x{jax.device_count()} ({device.platform}); dtype {dtype}; "
          f"model {config.model.get('size', '')} {cfg.n_layers}L d{cfg.dim}; batch {b} x seq {t}")
    print(f"FLOPs/token (6N + 12LHQT, causal attention counted once): {flop / 1e6:.1f} M "
          f"(6N: {fpt['6n'] / 1e6:.1f} M, full attention: {fpt['6n_attn_full'] / 1e6:.1f} M)")
    print(f"measured matmul peak ({dtype}): {measured / 1e9:.1f} GFLOP/s before, "
          f"{peak_after / 1e9:.1f} after the timed steps (load from other jobs shows here; "
          f"MFU uses the higher)"
          + (f"; table peak: {table / 1e12:.0f} TFLOP/s" if table else ""))
    print(f"host allocator: {hostalloc.active_allocator()} (every row; SLMJAX_ALLOCATOR=system for "
          f"glibc's default)")
    print(f"our step compiled in {compile_s:.1f} s\n")
    print(f"| {'implementation':<46} | {'tokens/s':>10} | {'s/step':>8} | {'MFU':>6} | {'vs ours':>7} |")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 10}|{'-' * 8}|{'-' * 9}|")
    for name, tps, s in rows:
        u = mfu(tps, flop, peak, n_dev)
        print(f"| {name:<46} | {tps:>10.1f} | {s:>8.3f} | {100 * u:>5.1f}% | {tps / ours_tps:>6.2f}x |")
    best_base = max(base.values()) if base else None
    # mfu_palm: the full 12LHQT attention term, the convention of the release's reported MFU.
    result = {"tokens_per_sec": ours_tps, "mfu": mfu(ours_tps, flop, peak, n_dev),
              "mfu_palm": mfu(ours_tps, fpt["6n_attn_full"], peak, n_dev),
              "baseline_tokens_per_sec": best_base, "baselines": base,
              "peak_flops": peak, "peak_source": "table" if table else "measured",
              "measured_matmul_flops": measured, "measured_matmul_flops_after": peak_after,
              "flops_per_token": flop,
              "device": device.device_kind, "n_devices": jax.device_count(), "dtype": dtype,
              "allocator": hostalloc.active_allocator(),
              "batch_size": b, "seq_len": t, "step_seconds": secs["ours"]}
    print(json.dumps(result))


def _parse_flags(argv):
    """Flag errors, and a --config file that does not load, as one line."""
    rest = benchcli.parse_flags(argv)
    try:
        _CONFIG.value.keys()  # ml_collections defers a missing file's error to first use
    except OSError as e:
        benchcli.fail(f"cannot load --config: {str(e).strip().splitlines()[-1].strip()}")
    return rest


if __name__ == "__main__":
    hostalloc.use_fast_allocator()
    app.run(main, flags_parser=_parse_flags)
