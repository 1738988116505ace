#!/usr/bin/env bash
# Installs the build dependencies (Debian packages), builds zimage.cpp (Release) and generates
# an image with the tiny test model, so a fresh machine proves the whole path in one command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)" --target zimage_cli
mkdir -p out
./build/zimage generate -m tests/fixtures/models/tiny-fp32 -p "a photo of a cat" \
  -W 64 -H 64 -s 8 -g 0 --seed 42 --dtype float32 -o out/demo.png --overwrite
echo "bootstrap: built ./build/zimage and wrote out/demo.png (tiny random-weight test model)"
