#!/usr/bin/env bash
# Submit a sweep to SLURM from a login node: one sbatch job per run that is neither completed nor
# queued (scripts in ROOT/slurm/). Run it again after failures to resume the rest (a job that
# reaches its time limit saves and queues itself again).
#
#   launch/slurm_run.sh SWEEP_CONFIG ROOT [slmjax-sweep flags...]
#   e.g. launch/slurm_run.sh configs/sweeps/paper_grid.py /shared/runs/paper \
#          --config.data_path=/shared/units --slurm_partition=gpu --nodes=2 --gpus_per_node=8 \
#          --time=2-00:00:00 --dry_run
set -euo pipefail

usage="usage: launch/slurm_run.sh SWEEP_CONFIG ROOT [slmjax-sweep flags...]"
config=${1:?$usage}
root=${2:?$usage}
shift 2

# A relative ROOT (and a SWEEP_CONFIG found from here) is where it is given, as slurm_stop.sh
# reads ROOT; the sweep then runs from the checkout, so configs/sweeps/... works from anywhere.
if [[ $root != /* ]]; then root=$PWD/$root; fi
if [[ $config != /* ]]; then
  if [[ -e $config ]]; then config=$PWD/$config
  elif [[ $config == *:* && -e ${config%:*} ]]; then config=$PWD/$config   # FILE:LAYOUT
  fi
fi
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
exec "$here/.venv/bin/slmjax-sweep" --config="$config" --root="$root" --launcher=slurm \
  --repo_dir="$here" "$@"
