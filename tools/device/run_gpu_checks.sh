#!/usr/bin/env bash
# One call on the lent H100/H200 for the CUDA backend: environment, parity tests, memory checker,
# resource usage of the kernels, benchmark. Results go under $OUT (at most 8 files).
#
# Here first:   tools/device/prepare_bundle.sh        (builds and packs .gpu-bundle/)
# Device call:  run(command="bash tools/device/run_gpu_checks.sh", carry=[".gpu-bundle"], timeout_s=540)
# Without a usable bundle (or with ZIMAGE_GPU_BUILD=1) it configures and builds on the device
# with -j16, which needs the project's dependencies there (see docs/cuda.md).
# Each stage has its own timeout; the whole script stays under 8 minutes.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/zimage_gpu_out}
mkdir -p "$OUT"
T0=$(date +%s)
log() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$OUT/summary.txt"; }
export PATH=/usr/local/cuda/bin:$PATH

# 0. What is on the machine.
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  nvcc --version | tail -2
  cmake --version | head -1
  ninja --version
  g++ --version | head -1
  ls /usr/local/cuda/lib64 2>/dev/null | grep -E 'libcublasLt.so|libcudart.so' | head -4
  for h in oneapi/dnnl/dnnl.hpp nlohmann/json.hpp gtest/gtest.h png.h pcre2.h unicode/uchar.h; do
    [ -e /usr/include/$h ] && echo "have $h" || echo "missing $h"
  done
} >"$OUT/env.txt" 2>&1
log "env: $(head -2 "$OUT/env.txt" | tail -1)"

# 1. Kernel resource usage (registers, spills, shared memory) and whether mma/ldmatrix are in
#    the SASS; in the background, on one core.
(
  nvcc -std=c++20 -O3 -arch=sm_90 -I src -Xptxas -v -c src/backend/cuda/attention_flash.cu -o /tmp/flash.o 2>&1 |
    grep -E 'Function properties|registers|spill|smem' || true
  if command -v cuobjdump >/dev/null; then
    echo "HMMA in flash SASS: $(cuobjdump --dump-sass /tmp/flash.o 2>/dev/null | grep -c HMMA)"
    echo "LDSM in flash SASS: $(cuobjdump --dump-sass /tmp/flash.o 2>/dev/null | grep -c LDSM)"
  fi
) >"$OUT/ptxas.txt" 2>&1 &
PTXAS_PID=$!

# 2. Binaries: the carried bundle, else a build on the device.
TEST_BIN="" BENCH_BIN=""
if [ -x .gpu-bundle/test_cuda ] && [ "${ZIMAGE_GPU_BUILD:-0}" != 1 ]; then
  mkdir -p /tmp/zimage_lib && tar -C /tmp/zimage_lib -xJf .gpu-bundle/lib.tar.xz
  export LD_LIBRARY_PATH=/tmp/zimage_lib/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
  fix=$(cat .gpu-bundle/fixtures_dir.txt)
  src_root=${fix%/tests/fixtures}
  if [ ! -e "$fix" ]; then mkdir -p "$(dirname "$src_root")" && ln -s "$ROOT" "$src_root"; fi  # path compiled in
  if ldd .gpu-bundle/test_cuda | grep -q 'not found'; then
    log "bundle does not load: $(ldd .gpu-bundle/test_cuda | grep 'not found' | tr '\n' ' ')"
  else
    TEST_BIN=.gpu-bundle/test_cuda BENCH_BIN=.gpu-bundle/zimage_cuda_bench
    log "using the carried bundle (commit $(cat .gpu-bundle/commit.txt 2>/dev/null))"
  fi
fi
if [ -z "$TEST_BIN" ]; then
  log "building on the device (-j16)"
  timeout 300 cmake -S . -B build-gpu -G Ninja -DZIMAGE_CUDA=ON -DZIMAGE_BENCH=OFF -DCMAKE_CUDA_ARCHITECTURES=90 \
    >"$OUT/build.log" 2>&1 &&
    timeout 300 ninja -C build-gpu -j16 test_cuda zimage_cuda_bench >>"$OUT/build.log" 2>&1
  if [ -x build-gpu/tests/cuda/test_cuda ]; then
    TEST_BIN=build-gpu/tests/cuda/test_cuda BENCH_BIN=build-gpu/src/backend/cuda/zimage_cuda_bench
    log "built on the device"
  else
    log "device build FAILED (tail of build.log follows)"
    tail -20 "$OUT/build.log"
  fi
fi

if [ -n "$TEST_BIN" ]; then
  # 3. Parity tests (every CUDA kernel, every op of the op table through ops::, the transformer's
  #    block and the whole tiny transformer forward on CUDA against the CPU); ZIMAGE_CUDA_SYNC=1
  #    makes an asynchronous fault point at its own launch.
  ZIMAGE_CUDA_SYNC=1 timeout 240 "$TEST_BIN" --gtest_color=no >"$OUT/test_cuda.log" 2>&1
  rc=$?
  log "test_cuda rc=$rc: $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]|^\[  SKIPPED \] [0-9]' "$OUT/test_cuda.log" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \]|Failure|rel_err|Which is' "$OUT/test_cuda.log" | head -30 | tee -a "$OUT/summary.txt"
  for suite in CudaOps CudaBlock CudaTransformer; do  # the op table and the model code on CUDA
    log "$suite: $(grep -cE "^\[       OK \] ([A-Za-z]+/)?$suite\." "$OUT/test_cuda.log") ok, $(grep -cE "^\[  FAILED  \] ([A-Za-z]+/)?$suite\." "$OUT/test_cuda.log") failed"
  done

  # 4. Memory checker on the kernels and attention (out-of-bounds, misaligned accesses).
  if command -v compute-sanitizer >/dev/null; then
    timeout 120 compute-sanitizer --tool memcheck --print-limit 20 "$TEST_BIN" --gtest_color=no \
      --gtest_filter='*Kernels*:*Attention*:CudaOps.*:CudaTransformer.*:-*LongSequence*' >"$OUT/memcheck.log" 2>&1
    log "memcheck rc=$?: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)"
  fi

  # 5. Benchmark at 1024x1024 sizes.
  timeout 150 "$BENCH_BIN" "$OUT/bench.tsv" >"$OUT/bench.log" 2>&1
  log "bench rc=$?"
fi

wait "$PTXAS_PID" 2>/dev/null
log "ptxas: $(grep -E 'registers' "$OUT/ptxas.txt" | head -2 | tr '\n' ' ')"
echo "---- bench ----"
cat "$OUT/bench.log" 2>/dev/null | tail -16
echo "---- summary ----"
cat "$OUT/summary.txt"
