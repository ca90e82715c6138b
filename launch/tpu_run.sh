#!/usr/bin/env bash
# Launch a sweep on a TPU VM slice prepared by launch/tpu_setup.sh. Each run is started on every
# worker with `gcloud compute tpus tpu-vm ssh --worker=all`; runs go one after another. Run this
# inside tmux or screen: the sweep lives as long as this shell. Launch it again to resume.
#
#   launch/tpu_run.sh TPU_NAME ZONE SWEEP_CONFIG ROOT [slmjax-sweep flags...]
#   e.g. launch/tpu_run.sh my-v4-32 us-central2-b configs/sweeps/paper_grid.py /mnt/gcs/runs/paper \
#          --config.data_path=/mnt/gcs/units --project=my-project --tpu_type=v4-32 --dry_run
set -euo pipefail

usage="usage: launch/tpu_run.sh TPU_NAME ZONE SWEEP_CONFIG ROOT [slmjax-sweep flags...]"
name=${1:?$usage}
zone=${2:?$usage}
config=${3:?$usage}
root=${4:?$usage}
shift 4

here=$(cd "$(dirname "$0")/.." && pwd)
sweep="$here/.venv/bin/slmjax-sweep"
if [[ ! -x $sweep ]]; then sweep=slmjax-sweep; fi

exec "$sweep" --config="$config" --root="$root" --launcher=tpu --tpu_name="$name" --zone="$zone" "$@"
