#!/usr/bin/env bash
# libFuzzer targets of mdn's input validation, in an ASan + UBSan build made with clang.
#
#   tools/fuzz.sh build BUILD_DIR                    configure and build the fuzz targets
#   tools/fuzz.sh run BUILD_DIR TARGET SECONDS       fuzz_config or fuzz_checkpoint, from the seeds
#
# Exit code 77 when clang cannot build fuzz targets here (a skip, except in CI as root, where the
# set-up installs clang and this must work).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cmd=${1:-}
dir=${2:?usage: tools/fuzz.sh build|run BUILD_DIR ...}

skip() {
  if [[ "${CI:-}" == true && $EUID -eq 0 ]]; then echo "fuzz: $*" >&2; exit 1; fi
  echo "fuzz: skipped: $*" >&2
  exit 77
}

case $cmd in
  build)
    command -v clang++ >/dev/null || skip "clang++ not found (apt-get install clang libclang-rt-dev)"
    probe=$(mktemp -d)
    echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' >"$probe/p.cpp"
    if ! clang++ -fsanitize=fuzzer,address "$probe/p.cpp" -o "$probe/p" 2>/dev/null; then
      rm -rf "$probe"
      skip "clang++ cannot link -fsanitize=fuzzer (apt-get install libclang-rt-dev)"
    fi
    rm -rf "$probe"
    mkdir -p "$dir"
    cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DMDN_FUZZ=ON -DMDN_BUILD_TESTS=OFF >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log" >&2; exit 1; }
    cmake --build "$dir" -j "$(nproc)" --target fuzz_config fuzz_checkpoint
    ;;
  run)
    target=${3:?target}
    seconds=${4:?seconds}
    [[ -x "$dir/$target" ]] || skip "$dir/$target was not built"
    corpus=$(mktemp -d)
    trap 'rm -rf "$corpus"' EXIT
    case $target in
      fuzz_config) cp configs/*.yaml "$corpus/" ;;
      fuzz_checkpoint) cp tests/fuzz/corpus_checkpoint/* "$corpus/" ;;
    esac
    export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    "$dir/$target" -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=4096 -print_final_stats=1 \
      -artifact_prefix="$dir/$target-" "$corpus"
    ;;
  *) echo "usage: tools/fuzz.sh build BUILD_DIR | run BUILD_DIR TARGET SECONDS" >&2; exit 2 ;;
esac
