#!/usr/bin/env bash
# Prepare every worker of a Cloud TPU VM slice for slmjax: copy this checkout (committed files plus
# uncommitted changes to tracked files) to ~/slmjax on each worker, create ~/slmjax/.venv there with
# slmjax and JAX for TPU, then check that the workers form one JAX job. With SLMJAX_BUCKET set, also
# mount that Cloud Storage bucket with gcsfuse at /mnt/gcs on every worker, so that sweep roots and
# unit datasets under /mnt/gcs are the same files on all workers.
#
#   [SLMJAX_BUCKET=BUCKET] launch/tpu_setup.sh TPU_NAME ZONE [PROJECT]
set -euo pipefail

usage="usage: launch/tpu_setup.sh TPU_NAME ZONE [PROJECT]"
name=${1:?$usage}
zone=${2:?$usage}
project=${3:-}
bucket=${SLMJAX_BUCKET:-}
jax_version=0.10.2
here=$(cd "$(dirname "$0")/.." && pwd)

gflags=("--zone=$zone")
if [[ -n $project ]]; then gflags+=("--project=$project"); fi

rev=$(git -C "$here" stash create)
rev=${rev:-HEAD}
archive=$(mktemp --suffix=.tar.gz)
trap 'rm -f "$archive"' EXIT
git -C "$here" archive --format=tar.gz -o "$archive" "$rev"

echo "copying $(git -C "$here" rev-parse --short HEAD) to every worker of $name"
gcloud compute tpus tpu-vm scp "$archive" "$name:slmjax.tar.gz" --worker=all "${gflags[@]}"

remote='set -euo pipefail
# tcmalloc: slmjax-train preloads it so that host buffers stay mapped (slmjax/hostalloc.py).
if ! python3 -m venv --help >/dev/null 2>&1 || ! ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1; then
  sudo apt-get -qq update && sudo DEBIAN_FRONTEND=noninteractive apt-get -qq install -y python3-venv libtcmalloc-minimal4
fi
rm -rf ~/slmjax.new && mkdir -p ~/slmjax.new && tar -xzf ~/slmjax.tar.gz -C ~/slmjax.new
if [[ -d ~/slmjax/.venv ]]; then mv ~/slmjax/.venv ~/slmjax.new/.venv; fi
rm -rf ~/slmjax && mv ~/slmjax.new ~/slmjax && cd ~/slmjax
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e . "jax[tpu]=='"$jax_version"'"'

echo "installing slmjax and jax[tpu]==$jax_version on every worker"
gcloud compute tpus tpu-vm ssh "$name" --worker=all "${gflags[@]}" --command="$remote"

if [[ -n $bucket ]]; then
  echo "mounting gs://$bucket at /mnt/gcs on every worker"
  # shellcheck disable=SC2016  # expanded on the workers, not here
  mount='set -euo pipefail
if ! command -v gcsfuse >/dev/null; then
  codename=$(lsb_release -c -s)
  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null
  echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$codename main" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null
  sudo apt-get -qq update && sudo DEBIAN_FRONTEND=noninteractive apt-get -qq install -y gcsfuse
fi
sudo mkdir -p /mnt/gcs && sudo chown "$(id -u):$(id -g)" /mnt/gcs
if ! mountpoint -q /mnt/gcs; then gcsfuse --implicit-dirs '"$bucket"' /mnt/gcs; fi'
  gcloud compute tpus tpu-vm ssh "$name" --worker=all "${gflags[@]}" --command="$mount"
fi

echo "checking that the workers form one JAX job"
gcloud compute tpus tpu-vm ssh "$name" --worker=all "${gflags[@]}" --command='cd ~/slmjax && .venv/bin/python -c "
from slmjax.train import distributed
info = distributed.initialize()
import jax
print(f\"worker {jax.process_index()} of {jax.process_count()}: {jax.local_device_count()} local / {jax.device_count()} devices ({info.source})\")
"'
