"""Does each model size's training step fit a TPU slice or GPU nodes? Compiled for them, on this host.

    make tpu-compiler gpu-compiler   # once: libtpu and JAX's CUDA plugin (the compilers) into .venv
    python tools/compile_step.py --tpu=v4-32 --sizes=s20m,s85m,s155m
    python tools/compile_step.py --gpu=h100:2x8 --sizes=s823m --mesh=search

For each size, the sharded train step (configs/train.py:SIZE, the paper's batch) is compiled by
the target's XLA compiler for the slice's topology or the nodes' GPUs, with none attached
(slmjax.train.aot). With --micro_batches=0 the fewest micro-batches whose step fits each device's
memory with --headroom (10%) of it free are searched for (each try is one compilation); with
--mesh=search the FSDP x tensor meshes are tried too, fewest tensor shards first, and the layouts
found are printed as a sweep's per-size overrides. Prints a table per device: state (params +
AdamW), XLA's temporaries and generated code, total against the memory (a TPU chip's HBM; on a GPU
the pool JAX's allocator takes: XLA_CLIENT_MEM_FRACTION of the card, 0.75 unless set). The
last line is one JSON list of the rows (on TPU with XLA's FLOPs per chip beside the counted ones:
slmjax.train.aot says how far to read them).
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

import benchcli  # tools/, beside this script

_TPU = flags.DEFINE_string("tpu", "", "Accelerator type (v4-32, v5p-16, v5e-16, v6e-8) or topology (v4:2x2x4).")
_GPU = flags.DEFINE_string("gpu", "", "GPUs: KIND[:[NODESx]GPUS] with KIND a100, h100 or h200 (h100, h100:8, h100:2x8).")
_SIZES = flags.DEFINE_list("sizes", ["s20m", "s85m", "s155m", "s309m", "s823m"], "Model sizes of configs/train.py.")
benchcli.choices("sizes", ("tiny", "s20m", "s85m", "s155m", "s309m", "s823m"), required=True)
_CONFIG = flags.DEFINE_string("train_config", "configs/train.py", "Training config file (get_config(SIZE)).")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Global sequences per update; 0 = the config's (the paper's).",
                              lower_bound=0)
_VOCAB = flags.DEFINE_integer("vocab_size", 0, "model.vocab_size; 0 = the config's (502; unigram_grid.py's 5002).",
                               lower_bound=0)
_MICRO = flags.DEFINE_integer("micro_batches", 1, "Gradient-accumulation micro-batches; 0 = the fewest that fit.",
                              lower_bound=0)
_REMAT = flags.DEFINE_enum("remat", "none", ["none", "full", "dots", "dots_no_batch"], "model.remat.")
_ATTENTION = flags.DEFINE_enum("attention", "auto", ["auto", "splash", "cudnn", "xla"],
                                "model.attention (auto: splash on TPU, cuDNN on GPU).")
_MESH = flags.DEFINE_string("mesh", "", "data,fsdp,tensor (-1 fills); empty = the config's (FSDP over all chips); "
                            "'search' = the first of FSDP x tensor meshes, fewest tensor shards first, that fits.")
_HEADROOM = flags.DEFINE_float("headroom", 0.1, "With --micro_batches=0 or --mesh=search: the fraction of "
                               "each device's memory a layout must leave free (a step that just fits the "
                               "compiler's budget leaves none for the runtime's buffers).",
                               lower_bound=0.0, upper_bound=0.9)

GIB = 2 ** 30


def _config(size: str):
    from slmjax.launch import trainconf

    sets = [("model.remat", _REMAT.value), ("model.attention", _ATTENTION.value)]
    if _BATCH.value:
        sets.append(("train.batch_size", _BATCH.value))
    if _VOCAB.value:
        sets.append(("model.vocab_size", _VOCAB.value))
    if _MESH.value and _MESH.value != "search":
        try:
            d, f, t = (int(x) for x in _MESH.value.split(","))
        except ValueError:
            benchcli.fail(f"--mesh={_MESH.value!r}: give data,fsdp,tensor, e.g. 1,-1,1")
        sets += [("mesh.data", d), ("mesh.fsdp", f), ("mesh.tensor", t)]
    return trainconf.load(_CONFIG.value, size, sets)


def _fit(config, devices) -> dict:
    """The compiled step at --micro_batches, or the first of the valid counts that fits."""
    from slmjax.train.aot import compile_step, micro_batch_choices

    if _MICRO.value:
        config.train.micro_batches = _MICRO.value
        return compile_step(config, devices)
    choices, row = micro_batch_choices(config, len(devices)), None
    for m in choices:
        config.train.micro_batches = m
        row = compile_step(config, devices)
        print(f"  {config.model.size}: micro_batches={m} {_verdict(row)}", file=sys.stderr, flush=True)
        if _roomy(row):
            break
    if row is not None and not _roomy(row):
        print(f"  {config.model.size}: no micro-batch count ({', '.join(map(str, choices))}) fits with "
              f"{_HEADROOM.value:.0%} free; its row is micro_batches={row['micro_batches']}",
              file=sys.stderr, flush=True)
    return row


def _search_mesh(config, devices) -> dict | None:
    """The first candidate mesh (slmjax.train.aot.mesh_candidates) whose step fits with
    --headroom free, else the last one tried."""
    from slmjax.train.aot import mesh_candidates, micro_batch_choices

    row, size = None, config.model.size
    for mesh, why in mesh_candidates(config, len(devices)):
        shape = f"{mesh['data']},{mesh['fsdp']},{mesh['tensor']}"
        config.mesh.update(mesh)
        if not why and _MICRO.value and _MICRO.value not in micro_batch_choices(config, len(devices)):
            why = f"{_MICRO.value} micro-batches do not split batch {config.train.batch_size} over {mesh['fsdp']} shards"
        print(f"  {size}: mesh {shape}" + (f": {why}" if why else ""), file=sys.stderr, flush=True)
        if why:
            continue
        row = _fit(config, devices)
        if _MICRO.value:
            print(f"  {size}: micro_batches={_MICRO.value} {_verdict(row)}", file=sys.stderr, flush=True)
        if _roomy(row):
            break
    return row


def _roomy(row) -> bool:
    """Fits, and leaves --headroom of the memory free (where the device's memory is known)."""
    hbm = row["hbm_bytes"]
    return row["fits"] and (hbm is None or row["total_bytes"] <= (1 - _HEADROOM.value) * hbm)


def _verdict(row) -> str:
    """'fits', 'fits, but leaves under H% free' or 'does not fit', with the GiB used of the HBM."""
    used = f"({_gib(row['total_bytes'])} of {_gib(row['hbm_bytes'])} GiB)"
    if _roomy(row):
        return f"fits {used}"
    return f"fits, but leaves under {_HEADROOM.value:.0%} free {used}" if row["fits"] else f"does not fit {used}"


def _gib(x) -> str:
    return "-" if x is None else f"{x / GIB:.2f}"


def _target():
    """(devices, the target as given, its topology's name) of --tpu or --gpu."""
    from slmjax.train import gpu_topology, tpu_topology
    from slmjax.train.aot import CompileTargetError

    if bool(_TPU.value) == bool(_GPU.value):
        benchcli.fail("give one of --tpu (v4-32, v5e-16, ...) and --gpu (h100:8, h100:2x8, ...)")
    try:
        if _TPU.value:
            return tpu_topology.tpu_devices(_TPU.value), _TPU.value, tpu_topology.topology(_TPU.value)
        return gpu_topology.gpu_devices(_GPU.value), _GPU.value, gpu_topology.topology(_GPU.value)
    except CompileTargetError as e:
        benchcli.fail(str(e))


def main(argv):
    del argv
    from slmjax.launch.grid import SweepError
    from slmjax.train import gpu_topology
    from slmjax.train.aot import CompileTargetError, gpu_memory_fraction
    from slmjax.train.validate import ConfigError

    devices, target, name = _target()
    rows = []
    for size in _SIZES.value:
        try:
            config = _config(size)
            row = _search_mesh(config, devices) if _MESH.value == "search" else _fit(config, devices)
        except (ConfigError, SweepError, CompileTargetError) as e:
            benchcli.fail(f"{size}: " + str(e).replace("\n", "; "))
        if row is None and _MESH.value == "search":
            benchcli.fail(f"{size}: no FSDP x tensor mesh of {len(devices)} devices takes its batch and heads")
        if row is None:
            benchcli.fail(f"{size}: no micro-batch count splits its batch over the mesh's batch shards "
                          "(mesh.data * mesh.fsdp)")
        rows.append({"size": size, "target": target, "topology": name, **row})
    kind = devices[0].device_kind
    memory = "HBM" if _TPU.value else "memory*"
    print(f"\n{target} ({name}): {len(devices)} x {kind}; per device, GiB; "
          f"attention {rows[0]['attention']}, remat {rows[0]['remat']}")
    print(f"| size | mesh (d,f,t) | batch | micro | state | temporaries | code | total | {memory} | fits |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mesh = ",".join(str(r["mesh"][a]) for a in ("data", "fsdp", "tensor"))
        print(f"| {r['size']} | {mesh} | {r['batch_size']} | {r['micro_batches']} | {_gib(r['state_bytes'])} | "
              f"{_gib(r['temp_bytes'])} | {_gib(r['code_bytes'])} | {_gib(r['total_bytes'])} | "
              f"{_gib(r['hbm_bytes'])} | {'yes' if r['fits'] else 'no'} |")
    if _GPU.value:
        fraction, source = gpu_memory_fraction()
        print(f"*JAX's pool: {fraction} of the card's {gpu_topology.memory_bytes(kind) / GIB:.2f} GiB "
              f"({source}; XLA_CLIENT_MEM_FRACTION sets it)")
    if _MESH.value == "search":
        print("\nAs a sweep's sizes.<size>.overrides (configs/sweeps/paper_grid.py's LAYOUTS):")
        for r in rows:
            note = "" if _roomy(r) else "  # leaves under the headroom free" if r["fits"] else "  # does not fit"
            print(f"  {r['size']!r}: " + json.dumps({"mesh": r["mesh"], "train": {"micro_batches": r["micro_batches"]}})
                  + "," + note)
    print(json.dumps(rows))


if __name__ == "__main__":
    app.run(main, flags_parser=benchcli.parse_flags)
