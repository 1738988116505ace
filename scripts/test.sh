#!/usr/bin/env bash
# Builds (Release) and runs every test; checks that the build used only packages that
# scripts/setup.sh installs; then rebuilds the file-parsing tests under AddressSanitizer/UBSan and
# the shared-pipeline tests under ThreadSanitizer and runs them, then runs every libFuzzer target
# for a short smoke time (scripts/fuzz.sh). Exits non-zero when any test fails or a fuzzer finds
# something.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=${JOBS:-$(nproc)}
# Every source follows .clang-format (scripts/format.sh formats them).
bash scripts/format.sh --check
# A new compiler warning fails the run (-Werror: this build, the ASan and TSan builds and the clang
# fuzz build, where the kernel files' GCC-only pragmas are behind `#if !defined(__clang__)`).
# The packaged build (README "CPU kernel levels and portable builds"): baseline x86-64-v3 (AVX2 +
# FMA), no -march=native; the AVX-512 / AMX kernel files name their ISA in `#pragma GCC target`
# and run only where the CPU probe found it.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DZIMAGE_WERROR=ON -DZIMAGE_NATIVE=OFF -DZIMAGE_ARCH=x86-64-v3 >/dev/null
cmake --build build -j "$JOBS"
# It runs on an AVX2-only CPU: no compile command asks for more than x86-64-v3 (GCC builds: no
# -mavx512* or -mamx-* at all), ...
if grep -oE -- '-march=[a-z0-9-]+|-m(avx512[a-z0-9]*|amx-[a-z0-9]+)' build/compile_commands.json | sort -u |
    grep -vxE -- '-march=x86-64(-v3)?'; then
  echo "test.sh: build/compile_commands.json asks for an ISA above x86-64-v3 (listed above)" >&2
  exit 1
fi
ctest --test-dir build --output-on-failure -j "$JOBS"
# ... and its unit and parity tests (not the slow ones) pass with the avx2 kernels forced
# (ZIMAGE_CPU=avx2 caps oneDNN at AVX2 too); the fast parity tests run again with the portable
# kernels. These are paths that a machine with AVX-512 or AMX would otherwise never execute (ctest
# ran test_backend_ops at every level this CPU has). The whole suite per level is manual:
# ZIMAGE_CPU=avx2 ctest --test-dir build.
ZIMAGE_CPU=avx2 ctest --test-dir build --output-on-failure -j "$JOBS" -L 'unit|parity' -LE slow
ZIMAGE_CPU=portable ctest --test-dir build --output-on-failure -j "$JOBS" -L parity -LE slow
# Untrusted-input parsers (safetensors, configs, tokenizer, PNG) under ASan + UBSan.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DZIMAGE_ASAN=ON -DZIMAGE_WERROR=ON >/dev/null
asan_targets=(test_core test_tokenizer test_image)
cmake --build build-asan -j "$JOBS" --target "${asan_targets[@]}"
for t in "${asan_targets[@]}"; do
  echo "== $t (AddressSanitizer + UBSan)"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 "./build-asan/tests/$t" --gtest_brief=1
done
# One pipeline called from several threads (as a server does) under ThreadSanitizer. OpenMP runs
# one thread per call here: GCC's libgomp is not instrumented, so its own barriers would be
# reported as races; the calls' threads are plain std::threads.
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZIMAGE_TSAN=ON -DZIMAGE_WERROR=ON -DZIMAGE_BENCH=OFF >/dev/null
cmake --build build-tsan -j "$JOBS" --target test_pipeline test_server
echo "== test_pipeline PipelineConcurrency (ThreadSanitizer)"
TSAN_OPTIONS=halt_on_error=1 OMP_NUM_THREADS=1 ./build-tsan/tests/test_pipeline --gtest_brief=1 \
  --gtest_filter='PipelineConcurrency.*:-PipelineConcurrency.ThreadCountAppliesOnEveryCallingThread'
# The server's job queue (worker thread, cancels and views from request threads).
echo "== test_server JobQueue (ThreadSanitizer)"
TSAN_OPTIONS=halt_on_error=1 ./build-tsan/tests/test_server --gtest_brief=1 --gtest_filter='JobQueue.*'
# libFuzzer smoke run: each target ${FUZZ_SECONDS:-10} s from the committed seed corpus.
JOBS="$JOBS" bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
# Every system file the builds used (gcc and clang, sanitizers included) comes from a package
# setup.sh installs: a fresh machine has nothing else.
bash scripts/check_packages.sh build build-asan build-tsan "${ZIMAGE_FUZZ_BUILD:-build-fuzz}"
