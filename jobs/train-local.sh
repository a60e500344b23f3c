#!/usr/bin/env bash
# Single-node multi-process training with mpirun.
#
#   jobs/train-local.sh [-n P] CONFIG.yaml [--set KEY=VALUE ...]
#
# P defaults to the number of cores. The binary is build/mdn unless MDN names another. Exits with
# mdn's exit code (75: stopped by a signal after a checkpoint; run the same command to resume).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ranks=$(nproc 2>/dev/null || echo 1)
if [[ "${1:-}" == -n ]]; then
  ranks=$2
  shift 2
fi
if [[ $# -lt 1 ]]; then
  echo "usage: jobs/train-local.sh [-n P] CONFIG.yaml [--set KEY=VALUE ...]" >&2
  exit 2
fi
mdn=${MDN:-build/mdn}

flags=()
if mpirun --version 2>&1 | grep -q "Open MPI"; then
  # OpenMPI refuses root unless told, and more ranks than cores unless told.
  [[ $EUID -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  (( ranks > $(nproc) )) && flags+=(--oversubscribe)
fi
exec mpirun -n "$ranks" "${flags[@]}" "$mdn" train "$@"
