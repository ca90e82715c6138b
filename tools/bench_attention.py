"""Where the CPU attention's time goes: its matmul shapes and passes against the machine's peak.

    python tools/bench_attention.py --batch_size=4 --seq_len=2050 --heads=8 --head_dim=64

In one run, on one CPU device: (a) the measured matmul peak (a jitted 2048 x 2048 float32 matmul),
(b) each matmul shape of the blockwise attention (slmjax.model.blockwise) at its widest query block,
and its two elementwise passes, each timed inside a jitted loop, (c) the kernel itself, forward +
backward. Per (sequence, head) pair and query block the kernel runs seven matmuls: three of q k^T's
shape (the forward scores, their recomputation and dP = dO v^T), two of P v's (the output and
dQ = dS k) and two of x^T P's (the dV^T and dK^T updates). Prints a table and the kernel's
efficiency on its counted FLOPs (causal attention counted once, as bench_train) and on the FLOPs
it executes (whole diagonal blocks, recomputed scores). (d) The same matmul shapes and the 2048
square in the other GEMMs of the machine (`--libraries`: PyTorch's and NumPy's BLAS), to tell
whether a shape's rate is XLA's or the CPU's. The last line is one JSON object.
"""

from __future__ import annotations

import json
import time

from absl import app, flags

import benchcli  # tools/, beside this script
from slmjax import hostalloc

_BATCH = flags.DEFINE_integer("batch_size", 4, "Sequences.", lower_bound=1)
_SEQ = flags.DEFINE_integer("seq_len", 2050, "Tokens per sequence.", lower_bound=1)
_HEADS = flags.DEFINE_integer("heads", 8, "Attention heads.", lower_bound=1)
_HEAD_DIM = flags.DEFINE_integer("head_dim", 64, "Head dimension.", lower_bound=1)
_BLOCK = flags.DEFINE_integer("block", 512, "Query block of the blockwise attention.", lower_bound=1)
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed rounds of each measurement (the best counts).",
                               lower_bound=1)
_LIBRARIES = flags.DEFINE_list(
    "libraries", ["torch", "numpy"],
    "Other GEMMs timed at the kernel's matmul shapes and the 2048 square (torch, numpy; empty: none).")
benchcli.choices("libraries", ("torch", "numpy"))
_LOOP = 40  # iterations per timed loop of one matmul or pass


# How many of each matmul shape the kernel runs per (sequence, head) and query block, and its
# two elementwise passes (one each).
_USES = {"q k^T  [m,h] x [h,e]": 3, "P v    [m,e] x [e,h]": 2, "x^T P  [h,m] x [m,e]": 2}
_PASSES = ("softmax pass (mask, max, exp, sum)", "backward pass (mask, exp, dS)")


def _best(fn, rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _per_iteration(body, init, rounds: int) -> float:
    """Seconds of one iteration of `body(carry) -> carry` in a jitted loop. Each iteration's input
    depends on the previous result, so that XLA cannot hoist the work out of the loop."""
    import jax

    f = jax.jit(lambda x: jax.lax.fori_loop(0, _LOOP, lambda i, c: body(c), x))
    return _best(lambda: jax.block_until_ready(f(init)), rounds) / _LOOP


def shape_timings(m: int, e: int, h: int, rounds: int) -> dict:
    """{name: (seconds, flops)} of the kernel's matmul shapes and passes at an [m, e] block."""
    import jax.numpy as jnp
    import numpy as np

    from slmjax.model import blockwise

    rng = np.random.default_rng(0)
    arr = lambda *s: jnp.asarray(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    q, k, p, lse, delta = arr(m, h), arr(e, h), arr(m, e), arr(m, 1), arr(m, 1)
    mask = blockwise._block_mask(e - m, e, None)
    scale = 1.0 / np.sqrt(h)
    mm = lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32)  # noqa: E731
    nudge = lambda c: c[:1, :1]  # noqa: E731  (the loop dependency: one element of the result)

    def softmax_pass(c):  # forward: mask, row max, exp, row sum (the kernel's _pair_forward)
        x = jnp.where(mask, (p + nudge(c[0])) * scale, blockwise._NEG)
        ex = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
        return ex, jnp.sum(ex, axis=-1, keepdims=True)

    def backward_pass(c):  # backward: P from the saved lse, then dS (the kernel's _pair_backward)
        s = p + nudge(c)
        prob = jnp.where(mask, jnp.exp(s * scale - lse), 0.0)
        return prob * (s - delta) * scale

    flops = 2.0 * m * e * h
    qk, pv, xp = _USES
    return {
        qk: (_per_iteration(lambda c: mm(q + nudge(c), k.T), p, rounds), flops),
        pv: (_per_iteration(lambda c: mm(p, k + nudge(c)), q, rounds), flops),
        xp: (_per_iteration(lambda c: mm((q + nudge(c)).T, p), k.T, rounds), flops),
        _PASSES[0]: (_per_iteration(softmax_pass, (p, lse), rounds), 0.0),
        _PASSES[1]: (_per_iteration(backward_pass, p, rounds), 0.0),
    }


def _library_matmul(name: str):
    """matmul(a, b) -> None in library `name` on float32 NumPy arrays (operands converted once)."""
    import numpy as np

    if name == "numpy":
        def prepare(a, b):
            out = np.empty((a.shape[0], b.shape[1]), np.float32)
            return lambda: np.matmul(a, b, out=out)
        return prepare
    if name == "torch":
        import torch

        from slmjax import hostdevices

        torch.set_num_threads(hostdevices.host_cores())  # the cores XLA's CPU client uses

        def prepare(a, b):
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            out = torch.empty(a.shape[0], b.shape[1])
            return lambda: torch.matmul(ta, tb, out=out)
        return prepare
    raise ValueError(f"unknown library {name!r}")


def library_timings(names, m: int, e: int, h: int, rounds: int) -> dict:
    """{library: {shape: GFLOP/s}} of each library's matmul at the kernel's shapes (an [m, e]
    block, head dim h) and at 2048 x 2048 x 2048, all float32."""
    import numpy as np

    rng = np.random.default_rng(0)
    arr = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    qk, pv, xp = _USES
    # transposed views where the kernel has them (k^T, x^T), as the XLA loops above
    operands = {qk: (arr(m, h), arr(e, h).T), pv: (arr(m, e), arr(e, h)), xp: (arr(m, h).T, arr(m, e)),
                _SQUARE: (arr(2048, 2048), arr(2048, 2048))}
    out = {}
    for name in names:
        prepare = _library_matmul(name)
        out[name] = {}
        for shape, (a, b) in operands.items():
            run = prepare(a, b)
            reps = 2 if shape == _SQUARE else _LOOP

            def loop():
                for _ in range(reps):
                    run()
            sec = _best(loop, rounds) / reps
            out[name][shape] = 2.0 * a.shape[0] * a.shape[1] * b.shape[1] / sec / 1e9
    return out


_SQUARE = "square [2048,2048] x [2048,2048]"


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp
    import numpy as np

    from slmjax.model import blockwise
    from slmjax.train.flops import measured_matmul_peak

    b, t, n, h, rounds = _BATCH.value, _SEQ.value, _HEADS.value, _HEAD_DIM.value, _ROUNDS.value
    blocks = blockwise._blocks(t, _BLOCK.value)
    m = max(e - s for s, e in blocks)
    peak = measured_matmul_peak(n=2048, dtype="float32")
    shapes = shape_timings(m, t, h, rounds)
    libraries = {}
    for name in _LIBRARIES.value:
        try:
            libraries.update(library_timings([name], m, t, h, rounds))
        except ImportError as err:
            print(f"--libraries: {name} skipped ({err})")

    rng = np.random.default_rng(1)
    q, k, v, do = (jnp.asarray(rng.standard_normal((b, t, n, h)).astype(np.float32))
                   for _ in range(4))
    grad = jax.jit(jax.grad(
        lambda q, k, v: jnp.sum(blockwise.blockwise_causal_attention(q, k, v, None, _BLOCK.value)
                                * do), argnums=(0, 1, 2)))
    kernel = _best(lambda: jax.block_until_ready(grad(q, k, v)), rounds)
    pairs = b * n
    counted = 6.0 * h * t * t * pairs  # 3 x the forward's two matmuls over the causal half
    area = sum((e - s) * e for s, e in blocks)  # score entries computed per pair, all blocks
    executed = 7 * 2.0 * area * h * pairs
    # The operations at the speeds measured above, scaled from the widest block to all blocks.
    widest_blocks = area / (m * t) * pairs
    dots = sum(uses * shapes[name][0] for name, uses in _USES.items()) * widest_blocks
    passes = sum(shapes[name][0] for name in _PASSES) * widest_blocks

    print(f"\nattention [{b}, {t}, {n}, {h}] float32, query blocks of {m} rows ({len(blocks)} "
          f"blocks), one {jax.devices()[0].platform} device; matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s (2048 x 2048)\n")
    print(f"| {'operation at the widest block':<36} | {'us':>8} | {'GFLOP/s':>8} | {'of peak':>7} |")
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 10}|{'-' * 9}|")
    for name, (sec, fl) in shapes.items():
        rate = f"{fl / sec / 1e9:8.1f}" if fl else f"{'':>8}"
        share = f"{100 * fl / sec / peak:6.1f}%" if fl else f"{'':>7}"
        print(f"| {name:<36} | {1e6 * sec:>8.1f} | {rate} | {share} |")
    print(f"\n| {'forward + backward of the kernel':<44} | {'ms':>8} | {'of peak':>7} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 9}|")
    rows = [("at the matmul peak, counted FLOPs", counted / peak),
            ("at the matmul peak, executed FLOPs", executed / peak),
            ("matmuls at their measured speeds", dots),
            ("+ the two elementwise passes", dots + passes),
            ("measured", kernel)]
    for name, sec in rows:
        print(f"| {name:<44} | {1e3 * sec:>8.1f} | {100 * counted / peak / sec:>6.1f}% |")
    if libraries:
        names = list(libraries)
        print(f"\n| {'matmul (float32)':<36} | {'XLA':>8} | " + " | ".join(f"{x:>8}" for x in names)
              + " |  GFLOP/s")
        print(f"|{'-' * 38}|{'-' * 10}|" + "|".join("-" * 10 for _ in names) + "|")
        xla = {name: shapes[name][1] / shapes[name][0] / 1e9 for name in _USES}
        xla[_SQUARE] = peak / 1e9
        for shape in (*_USES, _SQUARE):
            print(f"| {shape:<36} | {xla[shape]:>8.1f} | "
                  + " | ".join(f"{libraries[x][shape]:>8.1f}" for x in names) + " |")
    print(json.dumps({"kernel_seconds": kernel, "peak_flops": peak, "counted_flops": counted,
                      "executed_flops": executed, "mfu_counted": counted / kernel / peak,
                      "matmul_seconds_at_measured_speeds": dots, "pass_seconds": passes,
                      "shapes": {k: {"seconds": s, "gflops": f / s / 1e9 if f else None}
                                 for k, (s, f) in shapes.items()},
                      "block_rows": m, "blocks": len(blocks),
                      "libraries_gflops": libraries}))


if __name__ == "__main__":
    hostalloc.use_fast_allocator()
    app.run(main, flags_parser=benchcli.parse_flags)
