#include <cmath>

#include "ops/backend.h"
#include "ops/ops.h"
#include "ops/row_kernels.h"

namespace zimage::ops {

float detail::rms_inv(const float* x, int64_t n, float eps) {
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  return 1.f / std::sqrt(ss / float(n) + eps);
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  ZI_DEVICE_OP(x, rms_norm, x, weight, eps);
  if (x.dtype() != DType::F32) fail("[rms_norm] input must be float32, got ", dtype_name(x.dtype()));
  const int64_t dim = x.dim(-1), rows = dim ? x.numel() / dim : 0;
  std::vector<float> w;
  if (weight.defined() && weight.numel() > 0) {
    if (weight.numel() != dim) fail("[rms_norm] weight has ", weight.numel(), " elements, input last dim is ", dim);
    w = weight.to_vector();
  }
  Tensor y = Tensor::empty(DType::F32, x.shape());
  const float* xp = x.f32();
  float* yp = y.f32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = xp + r * dim;
    float* yr = yp + r * dim;
    const float inv = detail::rms_inv(xr, dim, eps);
    if (w.empty())
      for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv;
    else
      for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * w[size_t(i)];
  }
  return y;
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  ZI_DEVICE_OP(x, layer_norm, x, weight, bias, eps);
  if (x.dtype() != DType::F32) fail("[layer_norm] input must be float32, got ", dtype_name(x.dtype()));
  const int64_t dim = x.dim(-1), rows = dim ? x.numel() / dim : 0;
  std::vector<float> w, b;
  if (weight.defined() && weight.numel() > 0) w = weight.to_vector();
  if (bias.defined() && bias.numel() > 0) b = bias.to_vector();
  if ((!w.empty() && int64_t(w.size()) != dim) || (!b.empty() && int64_t(b.size()) != dim))
    fail("[layer_norm] affine parameters do not match last dim ", dim);
  Tensor y = Tensor::empty(DType::F32, x.shape());
  const float* xp = x.f32();
  float* yp = y.f32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = xp + r * dim;
    float* yr = yp + r * dim;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < dim; ++i) mean += xr[i];
    mean /= double(dim);
    for (int64_t i = 0; i < dim; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= double(dim);
    const float inv = float(1.0 / std::sqrt(var + eps));
    const float mu = float(mean);
    for (int64_t i = 0; i < dim; ++i) {
      float v = (xr[i] - mu) * inv;
      if (!w.empty()) v *= w[size_t(i)];
      if (!b.empty()) v += b[size_t(i)];
      yr[i] = v;
    }
  }
  return y;
}

}  // namespace zimage::ops
