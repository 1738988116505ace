// Register-only loops of independent dot-product instructions: the CPU's instruction peak, for
// tools/bench/bench_gemm --peak. Call a loop only when features() has its instruction.
#pragma once
#include <cstdint>

namespace zimage::cpu {

constexpr int kPeakAccumulators = 12;
// iters x kPeakAccumulators vpdpbusd zmm (64 multiply-adds each); the result depends on all of them.
int64_t peak_loop_vpdpbusd(int64_t iters);
// iters x kPeakAccumulators vdpbf16ps zmm (32 multiply-adds each).
int64_t peak_loop_vdpbf16ps(int64_t iters);

}  // namespace zimage::cpu
