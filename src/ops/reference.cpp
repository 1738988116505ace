// Plain reference versions of the fast ops, used only by tests.
#include <cmath>
#include <limits>

#include "ops/ops.h"

namespace zimage::ops::ref {

Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias) {
  const int64_t N = w.dim(0), K = w.dim(1), M = x.numel() / K;
  auto xv = x.to_vector(), wv = w.to_vector();
  std::vector<float> bv;
  if (bias) bv = bias->to_vector();
  Shape s = x.shape();
  s.back() = N;
  Tensor y = Tensor::empty(DType::F32, s);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = bias ? bv[size_t(n)] : 0.0;
      for (int64_t kk = 0; kk < K; ++kk) acc += double(xv[size_t(m * K + kk)]) * wv[size_t(n * K + kk)];
      y.f32()[m * N + n] = float(acc);
    }
  return y;
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                 const std::vector<int64_t>& key_valid) {
  const int64_t B = q.dim(0), Sq = q.dim(1), Hq = q.dim(2), D = q.dim(3), Sk = k.dim(1), Hkv = k.dim(2);
  const int64_t group = Hq / Hkv;
  Tensor out = Tensor::zeros(DType::F32, q.shape());
  std::vector<double> s(static_cast<size_t>(Sk));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < Sq; ++i) {
        const int64_t valid = key_valid.empty() ? Sk : std::min(Sk, key_valid[size_t(b)]);
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Sk; ++j) {
          bool ok = j < valid && (!causal || j <= i + Sk - Sq);
          if (!ok) {
            s[size_t(j)] = -std::numeric_limits<double>::infinity();
            continue;
          }
          double acc = 0;
          for (int64_t d = 0; d < D; ++d)
            acc += double(q.f32()[((b * Sq + i) * Hq + h) * D + d]) * k.f32()[((b * Sk + j) * Hkv + h / group) * D + d];
          s[size_t(j)] = acc * scale;
          mx = std::max(mx, s[size_t(j)]);
        }
        if (std::isinf(mx)) continue;
        double sum = 0;
        for (int64_t j = 0; j < Sk; ++j) sum += (s[size_t(j)] = std::exp(s[size_t(j)] - mx));
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < Sk; ++j) acc += s[size_t(j)] * v.f32()[((b * Sk + j) * Hkv + h / group) * D + d];
          out.f32()[((b * Sq + i) * Hq + h) * D + d] = float(acc / sum);
        }
      }
  return out;
}

}  // namespace zimage::ops::ref
