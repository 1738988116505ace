#!/usr/bin/env bash
# Run HERE (no GPU needed) before the device call: builds the CUDA tree for sm_90 (+ compute_90
# PTX) and packs the test and benchmark binaries, with the shared libraries the device image may
# lack (oneDNN, libgomp, OpenCL loader; xz-compressed), into .gpu-bundle/ (git-ignored through
# .git/info/exclude). The device call then carries it: carry=[".gpu-bundle"].
# Why prebuilt: the device image has nvcc/cmake/ninja but (probably) not this project's Debian
# dependencies (oneDNN, nlohmann-json, GTest, PNG, PCRE2, ICU) and it cannot download them;
# run_gpu_checks.sh falls back to building there when the bundle does not load.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export PATH=/usr/local/cuda/bin:$PATH
B=${BUILD_DIR:-build-cuda}
nice -n 19 cmake -S . -B "$B" -G Ninja -DZIMAGE_CUDA=ON -DZIMAGE_BENCH=OFF -DCMAKE_CUDA_ARCHITECTURES="90;90-virtual" >/dev/null
nice -n 19 ninja -C "$B" -j"${JOBS:-2}" test_cuda zimage_cuda_bench
rm -rf .gpu-bundle
mkdir -p .gpu-bundle/lib
cp "$B/tests/cuda/test_cuda" "$B/src/backend/cuda/zimage_cuda_bench" .gpu-bundle/
for lib in $(ldd "$B/tests/cuda/test_cuda" | awk '/=>/ {print $3}'); do
  case "$lib" in
    *libdnnl* | *libgomp* | *libOpenCL*) cp -L "$lib" .gpu-bundle/lib/ ;;
  esac
done
tar -C .gpu-bundle -cJf .gpu-bundle/lib.tar.xz lib
rm -rf .gpu-bundle/lib
echo "$ROOT/tests/fixtures" >.gpu-bundle/fixtures_dir.txt  # the path compiled into test_cuda
git rev-parse HEAD >.gpu-bundle/commit.txt
git_dir=$(git rev-parse --git-common-dir)
grep -qxF '/.gpu-bundle/' "$git_dir/info/exclude" 2>/dev/null || echo '/.gpu-bundle/' >>"$git_dir/info/exclude"
du -sh .gpu-bundle
