"""Multi-process JAX: `jax.distributed.initialize` from flags, the environment, or the cluster.

Call `initialize()` once at the top of a program, before any JAX computation. Resolution order:

1. explicit arguments (the CLI passes `--coordinator_address`, `--num_processes`, `--process_id`);
2. the environment: `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`
   (and `JAX_LOCAL_DEVICE_IDS`, read by JAX itself);
3. a SLURM job step with more than one task (`SLURM_NTASKS > 1`): JAX's own SLURM detection,
   except that with one task per node every GPU of the node stays visible to that task;
4. a Cloud TPU VM (`/dev/accel*` or `/dev/vfio/<n>`): JAX's own TPU detection (every worker of the
   slice becomes one process);
5. otherwise one process: nothing to do.

On CPU JAX uses gloo for cross-process collectives, so several processes on one machine (each with
its own fake devices) run the same sharded program as one process with all the devices.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os

from absl import flags

from slmjax.errortext import first_line

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "host:port of process 0's coordinator for multi-process JAX (else $JAX_COORDINATOR_ADDRESS, "
    "else detected on SLURM and Cloud TPU).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Number of JAX processes (else $JAX_NUM_PROCESSES, else detected).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index in [0, num_processes) (else $JAX_PROCESS_ID).")


class DistributedError(RuntimeError):
    """A multi-process setting that cannot work (one line, names the setting)."""


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """How this program was started: `source` is 'single', 'explicit', 'slurm' or 'tpu'."""

    source: str
    num_processes: int
    process_id: int
    coordinator_address: str | None = None


_INFO: ProcessInfo | None = None
_SLURM_STEP_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                    "SLURM_LOCALID")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"${name}={value!r} is not an integer") from None


def _slurm_local_gpus() -> list[int] | None:
    """GPU ids for a task that owns a whole node (one task per node), else None (JAX's default)."""
    tasks_per_node = os.environ.get("SLURM_STEP_TASKS_PER_NODE", os.environ.get("SLURM_NTASKS_PER_NODE", ""))
    if tasks_per_node.split("(")[0] != "1":
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    count = len([d for d in visible.split(",") if d.strip()]) if visible else None
    if count is None:
        count = _env_int("SLURM_GPUS_ON_NODE") or _env_int("SLURM_GPUS_PER_TASK")
    # CUDA renumbers the devices it is given from 0, whatever their physical ids.
    return list(range(count)) if count else None


def _on_tpu_vm() -> bool:
    return bool(glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"))


def resolve(coordinator_address: str | None = None, num_processes: int | None = None,
            process_id: int | None = None) -> tuple[ProcessInfo, dict]:
    """Decide how to initialise: (info, kwargs for jax.distributed.initialize or {} for none)."""
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")

    if coordinator_address or num_processes is not None or process_id is not None:
        missing = [name for name, v in (("coordinator_address", coordinator_address),
                                        ("num_processes", num_processes),
                                        ("process_id", process_id)) if v is None]
        if missing:
            raise DistributedError(
                "multi-process JAX needs coordinator_address, num_processes and process_id together "
                f"(flags or $JAX_*): missing {', '.join(missing)}")
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise DistributedError(
                f"process_id={process_id} must lie in [0, num_processes={num_processes})")
        if num_processes == 1:
            return ProcessInfo("single", 1, 0), {}
        info = ProcessInfo("explicit", num_processes, process_id, coordinator_address)
        return info, dict(coordinator_address=coordinator_address, num_processes=num_processes,
                          process_id=process_id)

    # A SLURM job step (srun) with several tasks; the batch script itself has no step node list.
    if (all(v in os.environ for v in _SLURM_STEP_VARS) and (_env_int("SLURM_NTASKS") or 1) > 1):
        kwargs = {}
        gpus = _slurm_local_gpus()
        if gpus is not None:
            kwargs["local_device_ids"] = gpus
        info = ProcessInfo("slurm", _env_int("SLURM_NTASKS"), _env_int("SLURM_PROCID") or 0)
        return info, kwargs

    if _on_tpu_vm():
        return ProcessInfo("tpu", 0, 0), {}   # counts are known only after initialisation
    return ProcessInfo("single", 1, 0), {}


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> ProcessInfo:
    """Start multi-process JAX when this program is one of several processes; idempotent.

    Arguments left None fall back to the absl flags (when parsed), then the environment, then
    cluster detection. Returns how the program runs; for one process it does nothing.
    """
    global _INFO
    if _INFO is not None:
        return _INFO
    if flags.FLAGS.is_parsed():
        coordinator_address = coordinator_address or _COORDINATOR.value
        num_processes = num_processes if num_processes is not None else _NUM_PROCESSES.value
        process_id = process_id if process_id is not None else _PROCESS_ID.value
    info, kwargs = resolve(coordinator_address, num_processes, process_id)
    if info.source != "single":
        import jax

        try:
            jax.distributed.initialize(**kwargs)
        except (RuntimeError, ValueError) as e:
            raise DistributedError(f"jax.distributed.initialize ({info.source}) failed: "
                                   f"{first_line(e)}") from None
        info = dataclasses.replace(info, num_processes=jax.process_count(),
                                   process_id=jax.process_index())
        logging.info("multi-process JAX (%s): process %d of %d", info.source, info.process_id,
                     info.num_processes)
    _INFO = info
    return info


def is_main_process() -> bool:
    """True on the process that writes shared files once (metrics, run.json): process 0."""
    return _INFO is None or _INFO.process_id == 0
