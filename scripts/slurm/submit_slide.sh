#!/usr/bin/env bash
# Submit the prediction of one slide over a Slurm job array, then its finalize job, which starts only when
# every task of the array succeeded (--dependency=afterok). Prints the two job ids, the array's first.
#
#   usage: scripts/slurm/submit_slide.sh IMAGE OUTPUT.ome.zarr [SBATCH_OPTION...]
#
# RUNNER, MODEL, PROBABILITIES, OVERLAY, RUNNER_FLAGS and SHARES pass through the environment to the jobs
# (see predict_slide.sbatch); the sbatch options (e.g. --array=0-15 --partition=gpu) apply to both jobs
# (--array only to the first). Docs: docs/cluster.md.
set -euo pipefail
if (($# < 2)); then
  echo "usage: $0 IMAGE OUTPUT.ome.zarr [SBATCH_OPTION...]" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
export IMAGE="$1" OUTPUT="$2"
shift 2
options=() array_options=()
for option in "$@"; do
  if [[ "$option" == --array=* ]]; then array_options+=("$option"); else options+=("$option"); fi
done
# (the ${a[@]+...} form: bash before 4.4 calls an empty array unbound)
array=$(sbatch --parsable ${options[@]+"${options[@]}"} ${array_options[@]+"${array_options[@]}"} \
  "$here/predict_slide.sbatch")
array=${array%%;*} # --parsable prints "ID" or "ID;CLUSTER"
finalize=$(sbatch --parsable ${options[@]+"${options[@]}"} --dependency="afterok:$array" --kill-on-invalid-dep=yes \
  "$here/finalize_slide.sbatch")
echo "$array"
echo "${finalize%%;*}"
