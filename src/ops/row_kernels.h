// Row-level float kernels shared by the ops (internal to src/ops): one definition each, so a
// fused op computes exactly what the separate ops compute.
#pragma once
#include <cstdint>

namespace zimage::ops::detail {

// 1 / sqrt(mean(x[0..n)^2) + eps), the RMSNorm factor of one row.
float rms_inv(const float* x, int64_t n, float eps);
// Interleaved-pair rotary embedding of one head vector v[D] in place with cs[D/2][2] = (cos, sin):
// (v[2i] + i v[2i+1]) * (cos_i + i sin_i).
void rope_pairs(float* v, const float* cs, int64_t D);

}  // namespace zimage::ops::detail
