#!/usr/bin/env bash
# Cancel this user's slmjax jobs (job names slmjax-<run key>), optionally only the keys matching an
# extended regular expression. A cancelled run resumes from its last checkpoint when resubmitted.
#
#   launch/slurm_stop.sh [KEY_REGEX]       e.g. launch/slurm_stop.sh 's823m_.*'
set -euo pipefail

pattern=${1:-.*}
# The pattern reaches awk through the environment: `awk -v` would process its backslashes
# (GNU awk turns \. into ., matching keys it should not).
mapfile -t jobs < <(squeue -u "${USER:-$(id -un)}" -h -o '%i %j' |
  SLMJAX_KEY_RE="^slmjax-($pattern)\$" awk '$2 ~ ENVIRON["SLMJAX_KEY_RE"] {print $1}')
if (( ${#jobs[@]} == 0 )); then
  echo "no slmjax jobs match '$pattern'"
  exit 0
fi
echo "cancelling ${#jobs[@]} job(s): ${jobs[*]}"
scancel "${jobs[@]}"
