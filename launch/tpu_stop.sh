#!/usr/bin/env bash
# Stop the training run on every worker of a TPU VM slice: SIGTERM to the trainer whose pid each
# worker recorded in ~/slmjax-train.pid (it finishes its step, saves a checkpoint and exits), then
# SIGKILL if it is still running after SLMJAX_STOP_GRACE seconds (default 600: an 823M run saves
# ~10 GB of parameters and AdamW moments through gcsfuse). The launching slmjax-sweep then stops
# as well (the run is not completed; with --keep_going it goes on).
#
#   [SLMJAX_STOP_GRACE=SECONDS] launch/tpu_stop.sh TPU_NAME ZONE [PROJECT]
set -euo pipefail

usage="usage: launch/tpu_stop.sh TPU_NAME ZONE [PROJECT]"
name=${1:?$usage}
zone=${2:?$usage}
project=${3:-}
grace=${SLMJAX_STOP_GRACE:-600}
if [[ ! $grace =~ ^[0-9]+$ ]] || (( 10#$grace == 0 )); then
  echo "SLMJAX_STOP_GRACE=$grace: give the seconds to wait before SIGKILL (a positive integer)" >&2
  exit 2
fi
grace=$((10#$grace))

gflags=("--zone=$zone")
if [[ -n $project ]]; then gflags+=("--project=$project"); fi

# shellcheck disable=SC2016  # expanded on the workers, not here
remote='pidfile=~/slmjax-train.pid
# The pid file outlives a trainer that ended by itself: signal the pid only while it is a trainer.
trainer() { kill -0 "$pid" 2>/dev/null && grep -qaF slmjax-train "/proc/$pid/cmdline" 2>/dev/null; }
if [[ ! -f $pidfile ]]; then echo "$(hostname): no trainer recorded"; exit 0; fi
pid=$(cat "$pidfile")
if ! trainer; then echo "$(hostname): trainer $pid already stopped"; rm -f "$pidfile"; exit 0; fi
kill -TERM "$pid"
for _ in $(seq '"$grace"'); do trainer || break; sleep 1; done
if trainer; then kill -KILL "$pid"; echo "$(hostname): trainer $pid killed"; else echo "$(hostname): trainer $pid stopped"; fi
rm -f "$pidfile"'

echo "stopping the trainer on every worker of $name (SIGTERM, SIGKILL after $grace s)"
gcloud compute tpus tpu-vm ssh "$name" --worker=all "${gflags[@]}" --command="$remote"
