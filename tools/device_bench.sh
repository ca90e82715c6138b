#!/usr/bin/env bash
# Training MFU on one GPU (H100 / H200 class): s309m and s823m in bfloat16, with transformers'
# Llama (eager) as the baseline, through tools/bench_train.py. For a GPU machine that has JAX,
# Flax, optax, PyTorch and transformers but no network (only ml-collections must be brought):
#
#   bash tools/device_bench.sh --fetch     # here, with PyPI: ml-collections' wheel into .whl/
#   bash tools/device_bench.sh             # there, with .whl/ copied beside the checkout
#
# BENCH_SIZES ("size:batch ...") and BENCH_BASELINES ("" for none) override the defaults.
# Each size runs under its own time limit (BENCH_TIMEOUT seconds, default 240); logs and the JSON
# lines go to $OUT (or /tmp/device_bench). Batch sizes (sequences of 2050 tokens) fit one 80 GB GPU.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

PY=${PYTHON:-python3}
if [[ "${1:-}" == "--fetch" ]]; then
  mkdir -p .git/info && touch .git/info/exclude
  grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
  version=$(sed -n 's/^ *ml-collections==\([0-9.]*\).*/\1/p' setup.cfg)
  exec "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d .whl "ml-collections==${version}"
fi

if ! "$PY" -c "import ml_collections" 2>/dev/null; then
  ls .whl/*.whl >/dev/null 2>&1 || { echo "ml-collections missing: run 'bash $0 --fetch' where PyPI is reachable"; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/slmjax_site .whl/*.whl || exit 2
  export PYTHONPATH=/tmp/slmjax_site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-/tmp/device_bench}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
"$PY" -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" 2>&1 | tee -a "$out/gpu.txt"

status=0
for spec in ${BENCH_SIZES:-s309m:16 s823m:8}; do
  size=${spec%%:*} batch=${spec##*:}
  timeout "${BENCH_TIMEOUT:-240}" "$PY" tools/bench_train.py --config=configs/train.py:"$size" \
    --batch_size="$batch" --steps=5 --warmup=2 --baselines="${BENCH_BASELINES-eager}" \
    > "$out/bench_$size.log" 2>&1
  rc=$?
  grep -v '^I[0-9]\|^W[0-9]' "$out/bench_$size.log" | tail -12
  # The JSON file exists only when the run printed its result line (never an empty one); warnings
  # printed at exit may follow it in the log.
  if result=$(grep '^{' "$out/bench_$size.log" | tail -1) && [ -n "$result" ]; then
    echo "$result" > "$out/bench_$size.json"
  else
    echo "$size: rc $rc, no result"
    status=1
  fi
done
exit $status
