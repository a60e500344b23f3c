#!/usr/bin/env bash
# Set-up behind the README's commands: installs the Debian/Ubuntu packages that are missing,
# then configures and builds mdn in build/. Idempotent; quiet and fast when all is in place.
#
#   tools/setup.sh [GROUP...]     groups: build (always), test, demo, bench
#
# Environment:
#   MDN_BUILD_DIR    build directory (default: build)
#   MDN_WERROR=ON    warnings are errors (default: ON when CI=true)
#   MDN_MPI=mpich    build against Debian's MPICH (and its parallel HDF5) instead of the default
#                    OpenMPI: installs those packages and names MPICH's compiler wrappers and
#                    mpiexec to CMake (the test command builds build-mpich/ this way)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# ---- packages -----------------------------------------------------------------------------------
pkgs_build=(g++ cmake make pkg-config
            libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
            libeigen3-dev libyaml-cpp-dev libgtest-dev
            libcli11-dev nlohmann-json3-dev librandom123-dev libxxhash-dev libfmt-dev)
pkgs_test=(python3 python3-h5py python3-numpy python3-xxhash python3-torch python3-matplotlib hdf5-tools
           slurm-wlm munge clang libclang-rt-dev qemu-user binutils iproute2)
pkgs_demo=(python3 python3-h5py python3-numpy python3-matplotlib)
pkgs_bench=(python3 python3-h5py python3-numpy python3-torch libopenblas0-openmp libblis4-serial libdnnl2 iproute2)

pkgs_mpich=(libmpich-dev mpich libhdf5-mpich-dev)
mpi=${MDN_MPI:-openmpi}
case "$mpi" in
  openmpi) ;;
  mpich) pkgs_build+=("${pkgs_mpich[@]}") ;;
  *) echo "setup: MDN_MPI must be openmpi or mpich, not '$mpi'" >&2; exit 2 ;;
esac

want=("${pkgs_build[@]}")
for group in "$@"; do
  case "$group" in
    build) ;;
    test) want+=("${pkgs_test[@]}") ;;
    demo) want+=("${pkgs_demo[@]}") ;;
    bench) want+=("${pkgs_bench[@]}") ;;
    *) echo "setup: unknown group '$group' (build, test, demo, bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$p")
done
# Unique, in order.
mapfile -t missing < <(printf '%s\n' "${missing[@]+"${missing[@]}"}" | awk 'NF && !seen[$0]++')

if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "setup: missing packages and no apt-get on this system: ${missing[*]}" >&2
    echo "setup: install their equivalents, then run this again" >&2
    exit 1
  fi
  sudo=()
  if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null; then sudo=(sudo); else
      echo "setup: these packages are missing and installing them needs root:" >&2
      echo "  apt-get install ${missing[*]}" >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q >/dev/null
  # A package this distribution does not have is reported and left out.
  available=()
  for p in "${missing[@]}"; do
    policy=$(apt-cache policy "$p" 2>/dev/null || true)
    if [[ $policy == *"Candidate: "* && $policy != *"Candidate: (none)"* ]]; then available+=("$p"); else
      echo "setup: note: no package '$p' in this distribution's archive; skipping it" >&2
    fi
  done
  if ((${#available[@]})); then
    echo "setup: installing ${available[*]}"
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${available[@]}" >/dev/null
  fi
fi

# ---- configure and build ------------------------------------------------------------------------
build_dir=${MDN_BUILD_DIR:-build}
werror=${MDN_WERROR:-$([[ "${CI:-}" == true ]] && echo ON || echo OFF)}
options=(-DCMAKE_BUILD_TYPE=Release -DMDN_WERROR="$werror")
if [[ "$mpi" == mpich ]]; then
  options+=(-DMPI_C_COMPILER=/usr/bin/mpicc.mpich -DMPI_CXX_COMPILER=/usr/bin/mpicxx.mpich
            -DMPIEXEC_EXECUTABLE=/usr/bin/mpiexec.mpich -DHDF5_C_COMPILER_EXECUTABLE=/usr/bin/h5pcc.mpich)
fi

stamp="$build_dir/.setup-options"
if [[ ! -f "$build_dir/CMakeCache.txt" || "$(cat "$stamp" 2>/dev/null)" != "${options[*]}" ]]; then
  mkdir -p "$build_dir"
  if ! cmake -S . -B "$build_dir" "${options[@]}" >"$build_dir/configure.log" 2>&1; then
    cat "$build_dir/configure.log" >&2
    echo "setup: cmake configure failed (log: $build_dir/configure.log)" >&2
    exit 1
  fi
  echo "${options[*]}" >"$stamp"
fi

jobs=$(nproc 2>/dev/null || echo 2)
if ! cmake --build "$build_dir" -j "$jobs" >"$build_dir/build.log" 2>&1; then
  grep -E 'error|Error' "$build_dir/build.log" | head -40 >&2 || true
  echo "setup: build failed (full log: $build_dir/build.log)" >&2
  exit 1
fi
if grep -q 'warning:' "$build_dir/build.log"; then
  grep -A3 'warning:' "$build_dir/build.log" >&2
  echo "setup: the build printed warnings (log: $build_dir/build.log)" >&2
fi
