#include <algorithm>
#include <cmath>

#include "ops/backend.h"
#include "ops/ops.h"

namespace zimage::ops {

void silu_(Tensor& x) {
  ZI_DEVICE_OP(x, silu_, x);
  float* p = x.f32();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = p[i] / (1.f + std::exp(-p[i]));
}

Tensor silu_mul(const Tensor& a, const Tensor& b) {
  ZI_DEVICE_OP(a, silu_mul, a, b);
  if (a.shape() != b.shape())
    fail("[silu_mul] shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " differ");
  Tensor y = Tensor::empty(DType::F32, a.shape());
  const float* ap = a.f32();
  const float* bp = b.f32();
  float* yp = y.f32();
  const int64_t n = a.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) yp[i] = ap[i] / (1.f + std::exp(-ap[i])) * bp[i];
  return y;
}

void add_(Tensor& x, const Tensor& y) {
  ZI_DEVICE_OP(x, add_, x, y);
  if (x.numel() != y.numel()) fail("[add] shapes ", shape_str(x.shape()), " and ", shape_str(y.shape()), " differ");
  float* p = x.f32();
  const float* q = y.f32();
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] += q[i];
}

void round_to_bf16_(Tensor& x) {
  ZI_DEVICE_OP(x, round_to_bf16_, x);
  float* p = x.f32();
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = round_bf16(p[i]);
}

void to_bf16_into(const Tensor& x, Tensor& out) {
  ZI_DEVICE_OP(x, to_bf16_into, x, out);
  if (out.dtype() != DType::BF16 || out.numel() != x.numel() || out.read_only())
    fail("[to_bf16] output must be a writable bfloat16 tensor of ", x.numel(), " elements, got ",
         dtype_name(out.dtype()), " ", shape_str(out.shape()));
  const int64_t n = x.numel(), chunk = 1 << 16;
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(out.raw());
  const size_t es = dtype_size(x.dtype());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += chunk)
    convert(src + size_t(i) * es, x.dtype(), dst + size_t(i) * 2, DType::BF16, size_t(std::min(chunk, n - i)));
}

}  // namespace zimage::ops
