#!/usr/bin/env bash
# `just check-slurm`: the job scripts of scripts/slurm/ on a real one-node Slurm cluster on this machine.
# Installs Slurm and MUNGE from Debian when missing, starts munged, slurmctld and slurmd from a temporary
# folder (own config, key, socket, ports and state; proctrack/linuxproc, task/none; nothing beyond
# localhost) and submits the scripts unchanged, paths through the environment:
#   (a) a folder over a 4-task array;
#   (b) one slide over a 4-task array (mask, probabilities and overlay stores) plus its finalize job
#       (--dependency=afterok, by submit_slide.sh);
#   (c) the same slide with a model that does not exist: every task fails, the finalize job never runs;
#   (d) share 2 of the folder again, alone (SHARES=4 --array=2), after (a).
# Every task must end COMPLETED with exit 0 ((c): FAILED, its finalize CANCELLED), each array's tasks must
# have run shares 0 to 3 once each, the folder's masks must equal an unsharded run's byte for byte, and the
# finalized stores every file of an unsharded run's stores. The daemons it started are stopped by pid on exit,
# failure included. The Kubernetes Jobs of scripts/k8s/ are only parsed and checked for the same split
# (check_k8s_jobs.py). Runs as root (slurmd starts the jobs). CHECK_SLURM_TIMEOUT (seconds, default 300)
# bounds the wait for the jobs; CHECK_SLURM_KEEP=1 keeps the temporary folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"
venv=.venv-slurm
requirements=scripts/checks/requirements-slurm.txt
timeout="${CHECK_SLURM_TIMEOUT:-300}"

say() { echo "check-slurm: $*"; }
if [[ "$(id -u)" != 0 ]]; then
  echo "check-slurm: must run as root (slurmd starts the jobs as their users): sudo -E just check-slurm" >&2
  exit 1
fi

# Slurm and MUNGE from Debian.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
  || ! command -v sbatch >/dev/null; then
  say "installing slurm-wlm and munge (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# Pillow, for the test images.
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  say "installing $requirements into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian ships venv (ensurepip) separately from python3.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi

# The Kubernetes Jobs beside the Slurm scripts: their structure only, no cluster runs them here.
"$venv/bin/python" scripts/checks/check_k8s_jobs.py scripts/k8s

cargo build --release --quiet -p trainer -p runner
built_at=$SECONDS
model="$repo/models/model.onnx"

tmp="$(mktemp -d)"
# munged refuses a socket in a folder others cannot traverse.
chmod 755 "$tmp"
mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/logs" "$tmp/bin" "$tmp/out/slide_sharded" "$tmp/out/slide_single"
# One binary for every job and every reference run, even if a build replaces target/'s meanwhile.
cp "${CARGO_TARGET_DIR:-target}/release/runner" "$tmp/bin/runner"
runner="$tmp/bin/runner"
daemons=() # "name:pid" of what this script started, stopped in reverse order
jobs_submitted=()

tails() {
  local file
  # A daemon's own log, or what it printed before it opened that log.
  for name in munge/munged slurmctld slurmd; do
    file="$tmp/$name.log"
    [[ -s "$file" ]] || file="$tmp/$name.stderr"
    [[ -s "$file" ]] || continue
    echo "---- last lines of $file" >&2
    tail -n 15 "$file" >&2
  done
  for file in "$tmp"/logs/*; do
    [[ -s "$file" ]] || continue
    echo "---- last lines of $file" >&2
    tail -n 15 "$file" >&2
  done
}
fail() {
  echo "check-slurm: FAILED: $*" >&2
  tails
  exit 1
}
alive() { kill -0 "$1" 2>/dev/null; }
cleanup() {
  local status=$? entry pid
  trap - EXIT INT TERM
  if ((${#jobs_submitted[@]})) && [[ -n "${SLURM_CONF:-}" ]]; then
    scancel "${jobs_submitted[@]}" 2>/dev/null || true
    # slurmd ends the jobs' processes it tracks; give it the time to before it is stopped itself.
    for _ in $(seq 1 20); do
      [[ -z "$(squeue -h -j "$(
        IFS=,
        echo "${jobs_submitted[*]}"
      )" 2>/dev/null)" ]] && break
      sleep 0.5
    done
  fi
  for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do
    entry="${daemons[i]}"
    pid="${entry#*:}"
    if alive "$pid"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do alive "$pid" || break; sleep 0.25; done
      if alive "$pid"; then
        echo "check-slurm: ${entry%%:*} (pid $pid) ignored SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [[ "${CHECK_SLURM_KEEP:-}" == 1 ]]; then
    echo "check-slurm: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "test images into $tmp"
"$venv/bin/python" scripts/checks/slurm_data.py data/conifer/image.png "$tmp/data"

# Two free TCP ports for slurmctld and slurmd: a Slurm already on this machine keeps its 6817 and 6818.
read -r ctld_port slurmd_port < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
memory_mb=$(awk '/^MemTotal:/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
cpus=$(nproc)
export SLURM_CONF="$tmp/slurm.conf"
cat >"$SLURM_CONF" <<CONF
# A one-node cluster on localhost, written by scripts/checks/check_slurm.sh.
ClusterName=segmenter-check
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to scontrol for the whole check.
MinJobAge=3600
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=check Nodes=localhost Default=YES MaxTime=60 State=UP
CONF

# A fresh MUNGE key and a munged of our own (its own socket, not the system's).
head -c 1024 /dev/urandom >"$tmp/munge/munge.key"
chmod 400 "$tmp/munge/munge.key"
munged --foreground --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/munge.socket" \
  --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munge/munged.log" --seed-file="$tmp/munge/munged.seed" \
  2>"$tmp/munge/munged.stderr" &
daemons+=("munged:$!")
for _ in $(seq 1 40); do [[ -S "$tmp/munge/munge.socket" ]] && break; sleep 0.25; done
[[ -S "$tmp/munge/munge.socket" ]] || fail "munged did not create its socket $tmp/munge/munge.socket"
munge --socket="$tmp/munge/munge.socket" --no-input | unmunge --socket="$tmp/munge/munge.socket" >/dev/null \
  || fail "munge could not encode and decode a credential with the new key"

slurmctld -D -f "$SLURM_CONF" 2>"$tmp/slurmctld.stderr" &
daemons+=("slurmctld:$!")
slurmd -D -f "$SLURM_CONF" -N localhost 2>"$tmp/slurmd.stderr" &
daemons+=("slurmd:$!")
say "munged, slurmctld and slurmd started (${daemons[*]}), ports $ctld_port and $slurmd_port"

state=""
for _ in $(seq 1 120); do
  for entry in "${daemons[@]}"; do alive "${entry#*:}" || fail "${entry%%:*} exited"; done
  state="$(sinfo -h -n localhost -o %T 2>/dev/null || true)"
  [[ "$state" == idle ]] && break
  sleep 0.5
done
[[ "$state" == idle ]] || fail "the node is not idle after 60 s (state: ${state:-no answer from slurmctld})"
say "node localhost idle: $cpus CPUs, ${memory_mb} MB"

# What every job gets through the environment (sbatch exports it): the binary and the model.
export RUNNER="$runner" MODEL="$model"
logs=(--output="$tmp/logs/%x-%j.out")

# (a) The folder over a 4-task array.
folder_job=$(INPUT_DIR="$tmp/data/folder" OUTPUT_DIR="$tmp/out/folder_sharded" \
  sbatch --parsable "${logs[@]}" scripts/slurm/predict_folder.sbatch)
folder_job=${folder_job%%;*}
jobs_submitted+=("$folder_job")
# (d) One share of the folder again once the array succeeded, as after a failed task: SHARES keeps N at 4.
rerun_job=$(SHARES=4 INPUT_DIR="$tmp/data/folder" OUTPUT_DIR="$tmp/out/folder_sharded" \
  sbatch --parsable "${logs[@]}" --array=2 --dependency="afterok:$folder_job" \
  scripts/slurm/predict_folder.sbatch)
rerun_job=${rerun_job%%;*}
jobs_submitted+=("$rerun_job")
# (b) The slide over a 4-task array (mask, probabilities, overlay), then finalize once all succeeded.
mapfile -t slide_jobs < <(PROBABILITIES="$tmp/out/slide_sharded/probabilities.ome.zarr" \
  OVERLAY="$tmp/out/slide_sharded/overlay.ome.zarr" scripts/slurm/submit_slide.sh "$tmp/data/slide.png" \
  "$tmp/out/slide_sharded/mask.ome.zarr" "${logs[@]}")
((${#slide_jobs[@]} == 2)) || fail "submit_slide.sh printed ${#slide_jobs[@]} job ids, not 2: ${slide_jobs[*]}"
jobs_submitted+=("${slide_jobs[@]}")
# (c) The same with a model that does not exist: every task fails, so the finalize job must never start.
mapfile -t broken_jobs < <(MODEL="$tmp/missing.onnx" scripts/slurm/submit_slide.sh "$tmp/data/slide.png" \
  "$tmp/out/slide_broken.ome.zarr" "${logs[@]}")
((${#broken_jobs[@]} == 2)) || fail "submit_slide.sh printed ${#broken_jobs[@]} job ids, not 2: ${broken_jobs[*]}"
jobs_submitted+=("${broken_jobs[@]}")
say "submitted folder array $folder_job + its share 2 again $rerun_job," \
  "slide array ${slide_jobs[0]} + finalize ${slide_jobs[1]}," \
  "failing slide array ${broken_jobs[0]} + finalize ${broken_jobs[1]}"

started=$SECONDS
job_list="$(
  IFS=,
  echo "${jobs_submitted[*]}"
)"
while [[ -n "$(squeue -h -j "$job_list" -o %i)" ]]; do
  ((SECONDS - started < timeout)) \
    || fail "jobs still queued or running after ${timeout} s: $(squeue -h -j "$job_list" -o '%i %T %r' | tr '\n' ';')"
  for entry in "${daemons[@]}"; do alive "${entry#*:}" || fail "${entry%%:*} exited while the jobs ran"; done
  sleep 1
done
say "all jobs left the queue after $((SECONDS - started)) s"

# "TASK STATE EXIT" for each job of an array (or the one job), from slurmctld's records.
job_states() {
  scontrol -o show job "$1" \
    | sed -E 's/^JobId=([0-9]+) .* JobState=([A-Z_]+) .* ExitCode=([0-9:]+) .*/\1 \2 \3/' | sort
}
expect_states() { # JOB COUNT STATE EXIT WHAT
  local states
  states="$(job_states "$1")"
  [[ "$(grep -c . <<<"$states")" == "$2" ]] \
    || fail "$5: expected $2 jobs, slurmctld has: $(tr '\n' ';' <<<"$states")"
  grep -qv " $3 $4\$" <<<"$states" \
    && fail "$5: expected every job $3 with exit $4, got: $(tr '\n' ';' <<<"$states")"
  return 0
}
expect_states "$folder_job" 4 COMPLETED 0:0 "folder array $folder_job"
expect_states "$rerun_job" 1 COMPLETED 0:0 "share 2 of the folder again, $rerun_job"
expect_states "${slide_jobs[0]}" 4 COMPLETED 0:0 "slide array ${slide_jobs[0]}"
expect_states "${slide_jobs[1]}" 1 COMPLETED 0:0 "finalize job ${slide_jobs[1]}"
expect_states "${broken_jobs[0]}" 4 FAILED 1:0 "failing slide array ${broken_jobs[0]}"
expect_states "${broken_jobs[1]}" 1 CANCELLED 0:0 "finalize job ${broken_jobs[1]} after the failing array"
say "every task COMPLETED with exit 0; the failing array's tasks FAILED and its finalize job never ran"

# Each array task predicted its own share: shares 0 to 3, once each.
for name in segmenter-folder segmenter-slide; do
  shares="$(cat "$tmp"/logs/"$name"-*.out | grep -o 'share [0-9]* of [0-9]*' | grep -v 'of 4$' || true)"
  [[ -z "$shares" ]] || fail "$name: a task saw another task count: $shares"
done
for job in "$folder_job" "${slide_jobs[0]}"; do
  ids="$(job_states "$job" | cut -d' ' -f1)"
  shares="$(for id in $ids; do grep -ho 'share [0-9]* of 4' "$tmp/logs/"*-"$id".out; done | sort | tr '\n' ,)"
  [[ "$shares" == "share 0 of 4,share 1 of 4,share 2 of 4,share 3 of 4," ]] \
    || fail "array $job: expected shares 0 to 3 of 4 once each, the task logs say: $shares"
done

rerun_log="$tmp/logs/segmenter-folder-$(job_states "$rerun_job" | cut -d' ' -f1).out"
if ! grep -q "share 2 of 4" "$rerun_log" || ! grep -q "d_odd.png" "$rerun_log"; then
  fail "the rerun of share 2 of 4 did not predict that share: $(tr '\n' ';' <"$rerun_log")"
fi

# The references: one unsharded run each, outside Slurm.
"$runner" predict --quiet --model "$model" --input-dir "$tmp/data/folder" \
  --output-dir "$tmp/out/folder_single" >/dev/null || fail "the unsharded folder run failed"
single="$tmp/out/slide_single"
"$runner" predict --quiet --model "$model" --image "$tmp/data/slide.png" --output "$single/mask.ome.zarr" \
  --probabilities "$single/probabilities.ome.zarr" --overlay "$single/overlay.ome.zarr" >/dev/null \
  || fail "the unsharded slide run failed"

count() { find "$1" -type f | wc -l; }
[[ "$(count "$tmp/out/folder_single")" == 6 ]] \
  || fail "the unsharded folder run wrote $(count "$tmp/out/folder_single") files, not 6"
diff -r "$tmp/out/folder_single" "$tmp/out/folder_sharded" >&2 \
  || fail "the folder predicted over 4 tasks differs from one run (diff above)"
say "folder: the 4 tasks' $(count "$tmp/out/folder_sharded") masks equal one run's, byte for byte"
for store in mask probabilities overlay; do
  [[ -d "$single/$store.ome.zarr" ]] || fail "the unsharded slide run wrote no $store store"
done
diff -r "$single" "$tmp/out/slide_sharded" >&2 \
  || fail "the slide predicted over 4 tasks and finalized differs from one run (diff above)"
say "slide: the finalized stores' $(count "$tmp/out/slide_sharded") files (mask, probabilities, overlay)" \
  "equal one run's, byte for byte"
say "PASS ($((SECONDS - built_at)) s after the build)"
