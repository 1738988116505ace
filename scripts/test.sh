#!/usr/bin/env bash
# Builds (Release) and runs every test; then rebuilds the file-parsing tests under
# AddressSanitizer/UBSan and runs them, then runs every libFuzzer target for a short smoke time
# (scripts/fuzz.sh). Exits non-zero when any test fails or a fuzzer finds something.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=${JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$JOBS"
ctest --test-dir build --output-on-failure -j "$JOBS"
# Untrusted-input parsers (safetensors, configs, tokenizer, PNG) under ASan + UBSan.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DZIMAGE_ASAN=ON >/dev/null
asan_targets=(test_core test_tokenizer test_image)
cmake --build build-asan -j "$JOBS" --target "${asan_targets[@]}"
for t in "${asan_targets[@]}"; do
  echo "== $t (AddressSanitizer + UBSan)"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 "./build-asan/tests/$t" --gtest_brief=1
done
# libFuzzer smoke run: each target ${FUZZ_SECONDS:-10} s from the committed seed corpus.
JOBS="$JOBS" bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
