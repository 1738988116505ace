#include "transformer/rope_embedder.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace zimage::transformer {

RopeEmbedder::RopeEmbedder(double theta, std::vector<int64_t> axes_dims, std::vector<int64_t> axes_lens)
    : axes_dims_(std::move(axes_dims)), axes_lens_(std::move(axes_lens)) {
  ZI_ASSERT(axes_dims_.size() == 3 && axes_lens_.size() == 3);
  for (size_t a = 0; a < axes_dims_.size(); ++a) {
    const int64_t d = axes_dims_[a], e = axes_lens_[a], half = d / 2;
    head_dim_ += d;
    std::vector<float> t(size_t(e * half * 2));
    for (int64_t k = 0; k < half; ++k) {
      // freqs = 1 / theta ** (arange(0, d, 2, float64) / d); angle = outer(pos, freqs).float()
      const double freq = 1.0 / std::pow(theta, double(2 * k) / double(d));
      for (int64_t p = 0; p < e; ++p) {
        const float angle = float(double(p) * freq);
        // torch.polar(ones, angle) in complex64
        t[size_t((p * half + k) * 2)] = float(std::cos(double(angle)));
        t[size_t((p * half + k) * 2 + 1)] = float(std::sin(double(angle)));
      }
    }
    tables_.push_back(std::move(t));
  }
}

Tensor RopeEmbedder::operator()(const std::vector<PosId>& ids) const {
  const int64_t T = int64_t(ids.size()), half = head_dim_ / 2;
  Tensor out = Tensor::empty(DType::F32, {T, half, 2});  // [T, D/2, (cos, sin)]
  float* o = out.f32();
  for (int64_t t = 0; t < T; ++t) {
    float* dst = o + t * half * 2;
    for (size_t a = 0; a < axes_dims_.size(); ++a) {
      const int64_t p = ids[size_t(t)][a], n = axes_dims_[a];  // n floats = axes_dims/2 pairs
      if (p < 0 || p >= axes_lens_[a])
        fail("[transformer] position id ", p, " on axis ", a, " is outside axes_lens[", a, "] = ", axes_lens_[a],
             (a == 0 ? " (caption too long)" : " (image too large)"));
      std::memcpy(dst, tables_[a].data() + p * n, size_t(n) * sizeof(float));
      dst += n;
    }
  }
  return out;
}

}  // namespace zimage::transformer
