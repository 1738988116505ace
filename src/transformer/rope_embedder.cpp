#include "transformer/rope_embedder.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace zimage::transformer {

RopeEmbedder::RopeEmbedder(double theta, std::vector<int64_t> axes_dims, std::vector<int64_t> axes_lens)
    : axes_dims_(std::move(axes_dims)), axes_lens_(std::move(axes_lens)) {
  ZI_ASSERT(axes_dims_.size() == 3 && axes_lens_.size() == 3);
  for (size_t a = 0; a < axes_dims_.size(); ++a) {
    const int64_t d = axes_dims_[a], half = d / 2;
    head_dim_ += d;
    std::vector<double> f(static_cast<size_t>(half));
    // freqs = 1 / theta ** (arange(0, d, 2, float64) / d)
    for (int64_t k = 0; k < half; ++k) f[size_t(k)] = 1.0 / std::pow(theta, double(2 * k) / double(d));
    freqs_.push_back(std::move(f));
  }
}

Tensor RopeEmbedder::operator()(const std::vector<PosId>& ids) const {
  const int64_t T = int64_t(ids.size()), half = head_dim_ / 2;
  // Check every id first, and find how many rows of each axis' table this call needs.
  std::array<int64_t, 3> rows{0, 0, 0};
  for (int64_t t = 0; t < T; ++t)
    for (size_t a = 0; a < axes_dims_.size(); ++a) {
      const int64_t p = ids[size_t(t)][a];
      if (p < 0 || p >= axes_lens_[a])
        fail("[transformer] position id ", p, " on axis ", a, " is outside axes_lens[", a, "] = ", axes_lens_[a],
             (a == 0 ? " (caption too long)" : " (image too large)"));
      rows[a] = std::max(rows[a], p + 1);
    }
  // tables[a]: [rows[a], axes_dims[a]/2, 2] (cos, sin): angle = outer(pos, freqs).float(), then
  // torch.polar(ones, angle) in complex64.
  std::array<std::vector<float>, 3> tables;
  for (size_t a = 0; a < axes_dims_.size(); ++a) {
    const int64_t h = axes_dims_[a] / 2;
    tables[a].resize(size_t(rows[a] * h * 2));
    for (int64_t p = 0; p < rows[a]; ++p)
      for (int64_t k = 0; k < h; ++k) {
        const float angle = float(double(p) * freqs_[a][size_t(k)]);
        tables[a][size_t((p * h + k) * 2)] = float(std::cos(double(angle)));
        tables[a][size_t((p * h + k) * 2 + 1)] = float(std::sin(double(angle)));
      }
  }
  Tensor out = Tensor::empty(DType::F32, {T, half, 2});  // [T, D/2, (cos, sin)]
  float* o = out.f32();
  for (int64_t t = 0; t < T; ++t) {
    float* dst = o + t * half * 2;
    for (size_t a = 0; a < axes_dims_.size(); ++a) {
      const int64_t p = ids[size_t(t)][a], n = axes_dims_[a];  // n floats = axes_dims/2 pairs
      std::memcpy(dst, tables[a].data() + p * n, size_t(n) * sizeof(float));
      dst += n;
    }
  }
  return out;
}

}  // namespace zimage::transformer
