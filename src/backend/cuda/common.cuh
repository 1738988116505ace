// Helpers shared by the kernels: dtype-generic loads/stores (float32 arithmetic, one rounding at
// the store), warp reductions, the per-item row table and launch-size arithmetic.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"
#include "core/dtype.h"

namespace zimage::cuda {

__device__ __forceinline__ float load_f(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::BF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::F16:
      return __half2float(static_cast<const __half*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}

__device__ __forceinline__ void store_f(void* p, DType dt, int64_t i, float v) {
  switch (dt) {
    case DType::BF16:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
      break;
    case DType::F16:
      static_cast<__half*>(p)[i] = __float2half_rn(v);
      break;
    default:
      static_cast<float*>(p)[i] = v;
      break;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Row -> item table, passed to kernels by value. end[b] = first row after item b.
struct ItemRows {
  int n = 0;
  int64_t end[kMaxItems] = {};
  __device__ __forceinline__ int item_of(int64_t row) const {
    int b = 0;
    while (b < n - 1 && row >= end[b]) ++b;
    return b;
  }
};

// Validates `rows` against `total` rows and `items` items (the dim 0 of the per-item tensor).
ItemRows make_item_rows(const char* op, const std::vector<int64_t>& rows, int64_t total, int64_t items);

inline unsigned grid_for(int64_t n, int threads) {
  const int64_t g = (n + threads - 1) / threads;
  return unsigned(g < 1 ? 1 : (g > 2147483647 ? 2147483647 : g));
}

void check_float_dtype(const char* op, const DeviceTensor& t, const char* name);

}  // namespace zimage::cuda
