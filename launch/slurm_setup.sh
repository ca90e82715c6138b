#!/usr/bin/env bash
# Prepare a SLURM cluster for slmjax, on a login node, in this checkout (which must live on the
# filesystem the compute nodes share): create .venv with slmjax and JAX for CUDA GPUs.
#
#   launch/slurm_setup.sh [PYTHON]        (default python3; Python >= 3.10)
set -euo pipefail

python=${1:-python3}
jax_version=0.10.2
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

if [[ ! -x .venv/bin/python ]]; then "$python" -m venv .venv; fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e . "jax[cuda13]==$jax_version"
.venv/bin/python -c "import slmjax.launch.cli, slmjax.train.distributed; print('slmjax ready in $here/.venv')"
# slmjax-train preloads tcmalloc when the nodes have it (slmjax/hostalloc.py), else glibc huge pages.
.venv/bin/python -c "from slmjax import hostalloc as h; print('host allocator:', h.find_tcmalloc() or \
'glibc huge pages (install libtcmalloc-minimal4 or gperftools for tcmalloc)')"
echo "check the GPUs of one node with:"
echo "  srun --nodes=1 --ntasks=1 --gpus-per-task=8 $here/.venv/bin/python -c 'import jax; print(jax.devices())'"
