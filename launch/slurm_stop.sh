#!/usr/bin/env bash
# Cancel this user's slmjax jobs (job names slmjax-<run key>), optionally only the keys matching an
# extended regular expression. A cancelled run resumes from its last checkpoint when resubmitted.
#
#   launch/slurm_stop.sh [KEY_REGEX]       e.g. launch/slurm_stop.sh 's823m_.*'
set -euo pipefail

pattern=${1:-.*}
mapfile -t jobs < <(squeue -u "$USER" -h -o '%i %j' | awk -v re="^slmjax-($pattern)\$" '$2 ~ re {print $1}')
if (( ${#jobs[@]} == 0 )); then
  echo "no slmjax jobs match '$pattern'"
  exit 0
fi
echo "cancelling ${#jobs[@]} job(s): ${jobs[*]}"
scancel "${jobs[@]}"
