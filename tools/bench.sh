#!/usr/bin/env bash
# The performance benchmark (README, "Performance"): installs what it needs (PyTorch, OpenBLAS, BLIS
# and oneDNN from the distribution), builds, and prints the tables. Never a test: it measures, it does
# not judge.
#
#   tools/bench.sh [--rounds N] [--quick] [--no-native]
#   tools/bench.sh --data [--mdn PATH]      memory, epoch start and reads as ranks grow (bench_data.py)
#   tools/bench.sh --network [--rounds N]   the reduction between two simulated nodes, shaped links
#                                           (bench_network.py; as root)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools/setup.sh build bench
if [[ "${1:-}" == "--data" ]]; then
  shift
  exec /usr/bin/python3 tools/bench/bench_data.py --mdn "${MDN_BUILD_DIR:-build}/mdn" "$@"
fi
if [[ "${1:-}" == "--network" ]]; then
  shift
  exec /usr/bin/python3 tools/bench/bench_network.py --build "${MDN_BUILD_DIR:-build}" "$@"
fi
exec /usr/bin/python3 tools/bench/bench.py --build "${MDN_BUILD_DIR:-build}" "$@"
