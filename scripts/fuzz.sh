#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang + ASan + UBSan, in build-fuzz) and runs each for
# SECONDS_PER_TARGET seconds (default 60), one after the other. ZIMAGE_FUZZ_NO_BUILD=1 runs the
# targets already built.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (no TARGET: all of them)
#
# The committed corpus fuzz/corpus/<target>/ is a read-only seed; new inputs go to a scratch
# corpus outside the repository ($ZIMAGE_FUZZ_WORK, default $TMPDIR/zimage-fuzz, kept between
# runs), crash/timeout/leak/OOM inputs to $ZIMAGE_FUZZ_WORK/<target>/findings/. Prints per target
# the executions, exec/s, corpus size, coverage and any finding file; exits 1 when a target found
# something (or failed to run).
set -uo pipefail
cd "$(dirname "$0")/.."

ALL=(safetensors_header_fuzz safetensors_index_fuzz gguf_fuzz json_config_fuzz tokenizer_encode_fuzz
     tokenizer_json_fuzz png_metadata_fuzz server_request_fuzz image_input_fuzz)
# Input size caps. JSON configs are capped so that nesting depth stays far below what the
# recursive JSON code (dump, comparison) can take; see docs/DESIGN.md (Testing).
declare -A MAX_LEN=([gguf_fuzz]=16384 [safetensors_header_fuzz]=65536 [safetensors_index_fuzz]=8192 [json_config_fuzz]=8192
                    [tokenizer_encode_fuzz]=4096 [tokenizer_json_fuzz]=65536 [png_metadata_fuzz]=16384
                    [server_request_fuzz]=8192 [image_input_fuzz]=4096)
declare -A DICT=([safetensors_header_fuzz]=json [safetensors_index_fuzz]=json [json_config_fuzz]=json
                 [tokenizer_json_fuzz]=json [png_metadata_fuzz]=png
                 [server_request_fuzz]=json [image_input_fuzz]=png)

SECS=60
if [ $# -gt 0 ]; then SECS=$1; shift; fi
[[ "$SECS" =~ ^[0-9]+$ ]] && [ "$SECS" -ge 1 ] || { echo "fuzz.sh: SECONDS_PER_TARGET must be a positive integer (got '$SECS')" >&2; exit 2; }
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")
for t in "${targets[@]}"; do
  [ -n "${MAX_LEN[$t]+x}" ] || { echo "fuzz.sh: unknown target '$t' (known: ${ALL[*]})" >&2; exit 2; }
done

BUILD=${ZIMAGE_FUZZ_BUILD:-build-fuzz}
WORK=${ZIMAGE_FUZZ_WORK:-${TMPDIR:-/tmp}/zimage-fuzz}
JOBS=${JOBS:-$(nproc)}
RSS_MB=${ZIMAGE_FUZZ_RSS_MB:-2048}

if [ "${ZIMAGE_FUZZ_NO_BUILD:-0}" != 1 ]; then  # 1: run the targets already in $BUILD
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DZIMAGE_FUZZ=ON \
    -DZIMAGE_WERROR=ON -DZIMAGE_TESTS=OFF -DZIMAGE_BENCH=OFF >/dev/null || exit 1
  cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" || exit 1
fi

# Readable stack traces when Debian's llvm-symbolizer is there (package llvm-14).
for s in llvm-symbolizer /usr/lib/llvm-14/bin/llvm-symbolizer; do
  if command -v "$s" >/dev/null; then export ASAN_SYMBOLIZER_PATH=$(command -v "$s"); break; fi
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=0
for t in "${targets[@]}"; do
  dir="$WORK/$t"
  mkdir -p "$dir/corpus" "$dir/findings"
  log="$dir/last.log"
  dict=()
  [ -n "${DICT[$t]+x}" ] && dict=(-dict="fuzz/dict/${DICT[$t]}.dict")
  before=$(ls "$dir/findings" | wc -l)
  echo "== $t: ${SECS}s (log: $log)"
  "$BUILD/fuzz/$t" "$dir/corpus" "fuzz/corpus/$t" -max_total_time="$SECS" -timeout=10 \
    -rss_limit_mb="$RSS_MB" -max_len="${MAX_LEN[$t]}" "${dict[@]}" -print_final_stats=1 \
    -artifact_prefix="$dir/findings/" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
  echo "   executions ${execs:-?}, ${rate:-?} exec/s, corpus ${corp:-?} (units/bytes), cov ${cov:-?}, ft ${ft:-?}, peak RSS ${rss:-?} MB"
  new=$(ls -t "$dir/findings" | head -n $(( $(ls "$dir/findings" | wc -l) - before )))
  if [ "$rc" -ne 0 ] || [ -n "$new" ]; then
    failed=1
    echo "   FINDING (exit $rc):"
    grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY|property violated|terminate called|what\(\)' "$log" | head -8 | sed 's/^/     /'
    for f in $new; do echo "     input: $dir/findings/$f"; done
  else
    echo "   no findings"
  fi
done
exit $failed
