#!/usr/bin/env bash
# The installed package works for a program outside the project: installs the already-built tree
# into a temporary prefix, then configures and builds tests/install/consumer with only
# -DCMAKE_PREFIX_PATH=<prefix> and runs it on a fixture model (64x64, 2 steps, float32). Also
# checks that the installed CLI runs.
# Usage: install_test.sh <build dir> <model folder>
set -euo pipefail
build=$1 model=$2
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
for f in include/zimage/pipeline.h lib/cmake/zimage/zimageConfig.cmake lib/cmake/zimage/zimageConfigVersion.cmake \
         lib/cmake/zimage/zimageTargets.cmake bin/zimage; do
  [[ -e "$tmp/prefix/$f" ]] || { echo "not installed: $f" >&2; exit 1; }
done
# Nothing from the source tree's internal headers is installed.
if [[ -e "$tmp/prefix/include/core" ]]; then echo "internal headers installed" >&2; exit 1; fi
"$tmp/prefix/bin/zimage" --version
# The consumer sees only the prefix (no source or build folder), and the compiler the build used.
compiler=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
launcher=$(sed -n 's/^CMAKE_CXX_COMPILER_LAUNCHER:[A-Z]*=//p' "$build/CMakeCache.txt")
cmake -S "$here/consumer" -B "$tmp/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$tmp/prefix" ${compiler:+-DCMAKE_CXX_COMPILER="$compiler"} \
      ${launcher:+-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher"} >/dev/null
cmake --build "$tmp/consumer"
"$tmp/consumer/zimage_consumer" "$model"
