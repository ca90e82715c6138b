"""Training throughput and MFU of one config, with the machine's peak and a PyTorch baseline.

    python tools/bench_train.py --config=configs/train.py:s20m --batch_size=4 --steps=5

In one run: (a) the measured matmul peak of this machine (and the table peak on GPU/TPU),
(b) our jitted train step, (c) transformers' LlamaForCausalLM of the same shape with torch AdamW,
eager and under torch.compile. Prints a table; the last line is one JSON object with
tokens_per_sec, mfu, baseline_tokens_per_sec. FLOPs: 6N + 12LHQT with causal attention counted
once (slmjax.train.flops), the same count for every row.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/train.py:s20m", "Training config.")
_BATCH = flags.DEFINE_integer("batch_size", 4, "Global sequences per step (overrides the config).")
_SEQ = flags.DEFINE_integer("seq_len", 0, "Tokens per sequence; 0 = config.data.seq_len.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps (after warm-up steps).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (compilation, caches).")
_BASELINES = flags.DEFINE_list("baselines", ["eager", "compile"],
                               "PyTorch baselines to run: eager, compile (empty: none).")
_DTYPE = flags.DEFINE_string("dtype", "auto", "Compute dtype: auto (float32 on CPU, bfloat16 on "
                             "GPU/TPU), float32 or bfloat16; the PyTorch baseline uses the same.")
_PROFILE = flags.DEFINE_string("profile_dir", "", "Write a JAX profiler trace of the timed steps here.")


def _time_steps(run_step, steps: int, warmup: int) -> float:
    """Median seconds per step."""
    for _ in range(warmup):
        run_step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        run_step()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bench_ours(config, steps, warmup, profile_dir=""):
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
    compile_s = time.perf_counter() - t0
    if profile_dir:
        for _ in range(warmup):
            run()
        jax.profiler.start_trace(profile_dir)
        sec = _time_steps(run, steps, 0)
        jax.profiler.stop_trace()
    else:
        sec = _time_steps(run, steps, warmup)
    return sec, compile_s


def bench_torch(cfg, batch, seq, steps, warmup, dtype, compiled):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    lc = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
                     num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                     num_key_value_heads=cfg.n_heads, max_position_embeddings=seq,
                     rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=True,
                     attention_bias=False, mlp_bias=False, attention_dropout=0.0)
    lc._attn_implementation = "sdpa"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = LlamaForCausalLM(lc).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1)
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

    return _time_steps(run, steps, warmup)


def main(argv):
    del argv
    import jax

    from slmjax.model.config import resolve_dtype
    from slmjax.train.flops import flops_per_token, measured_matmul_peak, mfu, table_peak
    from slmjax.train.validate import model_config, validate

    config = _CONFIG.value
    config.train.batch_size = _BATCH.value
    if _SEQ.value:
        config.data.seq_len = _SEQ.value
        config.model.max_seq_len = max(config.model.max_seq_len, _SEQ.value)
    config.model.dtype = _DTYPE.value
    config.train.micro_batches = 1
    validate(config, jax.device_count())
    cfg = model_config(config)
    dtype = str(resolve_dtype(cfg.dtype))
    b, t = config.train.batch_size, config.data.seq_len
    fpt = flops_per_token(cfg, t)
    flop = fpt["6n_attn"]
    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    # On CPU the fake devices share the host's cores: the peak is the whole host's, counted once.
    n_dev = 1 if on_cpu else jax.device_count()
    measured = measured_matmul_peak(n=2048 if on_cpu else 8192, dtype=dtype)
    table = None if on_cpu else table_peak(device.device_kind, dtype)
    peak = measured if table is None else table

    rows = []
    sec, compile_s = bench_ours(config, _STEPS.value, _WARMUP.value, _PROFILE.value)
    ours_tps = b * t / sec
    rows.append(("slmjax (JAX, jit)", ours_tps, sec))
    print(f"slmjax: {ours_tps:.1f} tokens/s ({sec:.2f} s/step, compiled in {compile_s:.0f} s)", flush=True)
    base = {}
    for kind in [k for k in _BASELINES.value if k]:
        try:
            s = bench_torch(cfg, b, t, _STEPS.value, _WARMUP.value, dtype, kind == "compile")
            base[kind] = b * t / s
            rows.append((f"PyTorch transformers Llama + AdamW ({kind})", base[kind], s))
            print(f"PyTorch {kind}: {base[kind]:.1f} tokens/s ({s:.2f} s/step)", flush=True)
        except Exception as e:  # a baseline that cannot run here is reported, not fatal
            print(f"baseline {kind} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")

    print(f"\ndevice: {device.device_kind} x{jax.device_count()} ({device.platform}); dtype {dtype}; "
          f"model {config.model.get('size', '')} {cfg.n_layers}L d{cfg.dim}; batch {b} x seq {t}")
    print(f"FLOPs/token (6N + 12LHQT, causal attention counted once): {flop / 1e6:.1f} M "
          f"(6N: {fpt['6n'] / 1e6:.1f} M, full attention: {fpt['6n_attn_full'] / 1e6:.1f} M)")
    print(f"measured matmul peak ({dtype}): {measured / 1e9:.1f} GFLOP/s"
          + (f"; table peak: {table / 1e12:.0f} TFLOP/s" if table else ""))
    print(f"our step compiled in {compile_s:.1f} s\n")
    print(f"| {'implementation':<46} | {'tokens/s':>10} | {'s/step':>8} | {'MFU':>6} | {'vs ours':>7} |")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 10}|{'-' * 8}|{'-' * 9}|")
    for name, tps, s in rows:
        u = mfu(tps, flop, peak, n_dev)
        print(f"| {name:<46} | {tps:>10.1f} | {s:>8.3f} | {100 * u:>5.1f}% | {tps / ours_tps:>6.2f}x |")
    best_base = max(base.values()) if base else None
    result = {"tokens_per_sec": ours_tps, "mfu": mfu(ours_tps, flop, peak, n_dev),
              "baseline_tokens_per_sec": best_base, "baselines": base,
              "peak_flops": peak, "peak_source": "table" if table else "measured",
              "measured_matmul_flops": measured, "flops_per_token": flop,
              "device": device.device_kind, "n_devices": jax.device_count(), "dtype": dtype,
              "batch_size": b, "seq_len": t, "step_seconds": sec}
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
