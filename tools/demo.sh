#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, and runs mdn.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools/setup.sh build demo
build_dir=${MDN_BUILD_DIR:-build}
"$build_dir/mdn" --version
