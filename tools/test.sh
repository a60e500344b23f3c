#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs the whole ctest suite
# (unit tests, and MPI tests under mpiexec -n 1, 2, 3), label by label, each within a time budget.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools/setup.sh build test

build_dir=${MDN_BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)

# label:budget-in-seconds. Every test carries one of these labels (checked below) and its own
# TIMEOUT (tests/CMakeLists.txt), so a hang fails its test instead of blocking the run.
budgets=(unit:300 cli:300 mpi:600 train:900 faults:900 fuzz:900 slurm:1500)

labels=()
for entry in "${budgets[@]}"; do labels+=("${entry%%:*}"); done
pattern="^($(IFS='|'; echo "${labels[*]}"))\$"
unlabeled=$(cd "$build_dir" && ctest -N -LE "$pattern" | sed -n 's/^Total Tests: //p')
if [[ "$unlabeled" != 0 ]]; then
  (cd "$build_dir" && ctest -N -LE "$pattern") >&2
  echo "test: $unlabeled tests carry no label with a budget in tools/test.sh" >&2
  exit 1
fi

failed=()
for entry in "${budgets[@]}"; do
  label=${entry%%:*}
  budget=${entry##*:}
  echo "== $label (budget ${budget}s)"
  start=$SECONDS
  rc=0
  (cd "$build_dir" && timeout --kill-after=15 "$budget" \
      ctest -L "^${label}\$" --output-on-failure -j "$jobs") || rc=$?
  if ((rc == 124 || rc == 137)); then
    echo "test: label '$label' exceeded its budget of ${budget}s" >&2
  fi
  ((rc == 0)) || failed+=("$label")
  echo "== $label: $((SECONDS - start))s"
done

if ((${#failed[@]})); then
  echo "test: FAILED labels: ${failed[*]}" >&2
  exit 1
fi
echo "test: all labels passed"
