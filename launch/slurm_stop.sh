#!/usr/bin/env bash
# Cancel this user's queued and running jobs of the sweep at ROOT (scripts ROOT/slurm/KEY.sbatch,
# job names slmjax-KEY), optionally only those whose run key fully matches a (Python) regular
# expression. Jobs of another root are left alone, even with the same keys. A cancelled run
# resumes from its last checkpoint when the sweep is submitted again.
#
#   launch/slurm_stop.sh ROOT [KEY_REGEX]       e.g. launch/slurm_stop.sh /shared/runs/paper 's823m_.*'
set -euo pipefail

usage="usage: launch/slurm_stop.sh ROOT [KEY_REGEX]"
root=${1:?$usage}
here=$(cd "$(dirname "$0")/.." && pwd)
exec "$here/.venv/bin/python" -m slmjax.launch.slurm "$root" "${2:-.*}"
