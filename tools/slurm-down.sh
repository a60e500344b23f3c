#!/usr/bin/env bash
# Stops the single-node SLURM that tools/slurm-up.sh started in DIR: exactly the daemons whose
# PIDs it recorded, then leftover step directories of killed jobs.
set -uo pipefail
if [[ $# -ne 1 ]]; then echo "usage: tools/slurm-down.sh DIR" >&2; exit 2; fi
dir=$(realpath -m "$1")
pids=()
for f in "$dir/run/slurmd.daemon.pid" "$dir/run/slurmctld.daemon.pid" "$dir/run/munged.pid"; do
  [[ -f "$f" ]] && pids+=("$(cat "$f")")
done
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
for _ in $(seq 1 50); do
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  ((alive)) || break
  sleep 0.2
done
for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
rm -f "$dir"/run/*.pid
# A killed PMIx step can leave its directory behind, which breaks a later step of the same job id.
rm -rf "$dir"/spool/spmix_appdir_* 2>/dev/null
exit 0
