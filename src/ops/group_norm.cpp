// GroupNorm (torch.nn.GroupNorm) over [B, C, *] with an optional fused SiLU.
#include <cmath>

#include "ops/ops.h"

namespace zimage::ops {

Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps, bool fuse_silu,
                  DType storage) {
  if (x.dtype() != DType::F32) fail("[group_norm] input must be float32, got ", dtype_name(x.dtype()));
  if (x.ndim() < 2) fail("[group_norm] input must be [B, C, ...], got ", shape_str(x.shape()));
  const int64_t B = x.dim(0), C = x.dim(1);
  if (groups <= 0 || C % groups != 0) fail("[group_norm] ", C, " channels are not divisible by ", groups, " groups");
  std::vector<float> w, b;
  if (weight.defined() && weight.numel() > 0) w = weight.to_vector();
  if (bias.defined() && bias.numel() > 0) b = bias.to_vector();
  if ((!w.empty() && int64_t(w.size()) != C) || (!b.empty() && int64_t(b.size()) != C))
    fail("[group_norm] affine parameters do not match ", C, " channels");
  const int64_t inner = C ? x.numel() / (B * C) : 0;  // H * W
  const int64_t cpg = C / groups, gsize = cpg * inner;
  const bool bf16 = storage == DType::BF16;
  Tensor y = Tensor::empty(DType::F32, x.shape());
  const float* xp = x.f32();
  float* yp = y.f32();
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t n = 0; n < B; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      const float* xg = xp + (n * C + g * cpg) * inner;
      float* yg = yp + (n * C + g * cpg) * inner;
      double sum = 0;
      for (int64_t i = 0; i < gsize; ++i) sum += xg[i];
      const double mean = gsize ? sum / double(gsize) : 0.0;
      double var = 0;
      for (int64_t i = 0; i < gsize; ++i) {
        const double d = xg[i] - mean;
        var += d * d;
      }
      var = gsize ? var / double(gsize) : 0.0;
      const float rstd = float(1.0 / std::sqrt(var + double(eps)));
      const float mu = float(mean);
      for (int64_t c = 0; c < cpg; ++c) {
        const int64_t ch = g * cpg + c;
        const float a = rstd * (w.empty() ? 1.f : w[size_t(ch)]);
        const float sh = (b.empty() ? 0.f : b[size_t(ch)]) - mu * a;
        const float* xc = xg + c * inner;
        float* yc = yg + c * inner;
        if (!fuse_silu && !bf16) {
#pragma omp simd
          for (int64_t i = 0; i < inner; ++i) yc[i] = xc[i] * a + sh;
        } else {
          for (int64_t i = 0; i < inner; ++i) {
            float v = xc[i] * a + sh;
            if (bf16) v = round_bf16(v);
            if (fuse_silu) v = v / (1.f + std::exp(-v));
            if (bf16) v = round_bf16(v);
            yc[i] = v;
          }
        }
      }
    }
  return y;
}

Tensor upsample_nearest2x(const Tensor& x) {
  if (x.dtype() != DType::F32 || x.ndim() != 4)
    fail("[upsample] input must be a float32 [B, C, H, W] tensor, got ", dtype_name(x.dtype()), " ",
         shape_str(x.shape()));
  const int64_t BC = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor y = Tensor::empty(DType::F32, {x.dim(0), x.dim(1), 2 * H, 2 * W});  // [B, C, 2H, 2W]
  const float* xp = x.f32();
  float* yp = y.f32();
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t p = 0; p < BC; ++p)
    for (int64_t h = 0; h < H; ++h) {
      const float* src = xp + (p * H + h) * W;
      float* d0 = yp + (p * 2 * H + 2 * h) * 2 * W;
      float* d1 = d0 + 2 * W;
      for (int64_t w = 0; w < W; ++w) d0[2 * w] = d0[2 * w + 1] = src[w];
      for (int64_t w = 0; w < 2 * W; ++w) d1[w] = d0[w];
    }
  return y;
}

}  // namespace zimage::ops
