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

namespace {
Tensor f32_like(const Tensor& x) { return Tensor::empty(DType::F32, x.shape()); }
int64_t last(const Tensor& x) { return x.dim(x.ndim() - 1); }
double sigmoid_x(double v) { return v / (1.0 + std::exp(-v)); }
}  // namespace

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  const int64_t n = last(x), rows = x.numel() / n;
  const auto xv = x.to_vector();
  const std::vector<float> wv = weight.defined() ? weight.to_vector() : std::vector<float>(size_t(n), 1.f);
  Tensor y = f32_like(x);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(xv[size_t(r * n + i)]) * xv[size_t(r * n + i)];
    const double inv = 1.0 / std::sqrt(ss / double(n) + eps);
    for (int64_t i = 0; i < n; ++i) y.f32()[r * n + i] = float(xv[size_t(r * n + i)] * inv * wv[size_t(i)]);
  }
  return y;
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  const int64_t n = last(x), rows = x.numel() / n;
  const auto xv = x.to_vector();
  const std::vector<float> wv = weight.defined() ? weight.to_vector() : std::vector<float>(size_t(n), 1.f);
  const std::vector<float> bv = bias.defined() ? bias.to_vector() : std::vector<float>(size_t(n), 0.f);
  Tensor y = f32_like(x);
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; ++i) m += xv[size_t(r * n + i)];
    m /= double(n);
    for (int64_t i = 0; i < n; ++i) v += (xv[size_t(r * n + i)] - m) * (xv[size_t(r * n + i)] - m);
    const double inv = 1.0 / std::sqrt(v / double(n) + eps);
    for (int64_t i = 0; i < n; ++i)
      y.f32()[r * n + i] = float((xv[size_t(r * n + i)] - m) * inv * wv[size_t(i)] + bv[size_t(i)]);
  }
  return y;
}

Tensor silu_mul(const Tensor& a, const Tensor& b) {
  const auto av = a.to_vector(), bv = b.to_vector();
  Tensor y = f32_like(a);
  for (size_t i = 0; i < av.size(); ++i) y.f32()[i] = float(sigmoid_x(av[i]) * bv[i]);
  return y;
}

Tensor rope_rotate_half(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  const int64_t D = last(x), H = x.dim(x.ndim() - 2), S = x.dim(x.ndim() - 3), half = D / 2;
  const int64_t B = x.numel() / (S * H * D);
  const auto xv = x.to_vector(), cv = cos.to_vector(), sv = sin.to_vector();
  Tensor y = f32_like(x);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < H; ++h) {
        const size_t o = size_t(((b * S + s) * H + h) * D);
        for (int64_t d = 0; d < D; ++d) {
          const double rot = d < half ? -double(xv[o + size_t(d + half)]) : double(xv[o + size_t(d - half)]);
          y.f32()[o + size_t(d)] =
              float(xv[o + size_t(d)] * double(cv[size_t(s * D + d)]) + rot * sv[size_t(s * D + d)]);
        }
      }
  return y;
}

Tensor rope_interleaved(const Tensor& x, const Tensor& cs) {
  const int64_t T = x.dim(0), H = x.dim(1), D = x.dim(2);
  const auto xv = x.to_vector(), cv = cs.to_vector();
  Tensor y = f32_like(x);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < D / 2; ++i) {
        const size_t o = size_t((t * H + h) * D + 2 * i), c = size_t((t * (D / 2) + i) * 2);
        const double re = xv[o], im = xv[o + 1], co = cv[c], si = cv[c + 1];
        y.f32()[o] = float(re * co - im * si);
        y.f32()[o + 1] = float(re * si + im * co);
      }
  return y;
}

Tensor modulate(const Tensor& x, const Tensor& scale, const std::vector<int64_t>& rows) {
  const int64_t N = x.dim(1);
  const auto xv = x.to_vector(), sv = scale.to_vector();
  Tensor y = f32_like(x);
  int64_t r = 0;
  for (size_t b = 0; b < rows.size(); ++b)
    for (int64_t i = 0; i < rows[b]; ++i, ++r)
      for (int64_t n = 0; n < N; ++n)
        y.f32()[r * N + n] = float(double(xv[size_t(r * N + n)]) * sv[b * size_t(N) + size_t(n)]);
  return y;
}

Tensor gate_add(const Tensor& x, const Tensor& gate, const Tensor& y, const std::vector<int64_t>& rows) {
  const int64_t N = x.dim(1);
  const auto xv = x.to_vector(), yv = y.to_vector();
  const std::vector<float> gv = gate.defined() ? gate.to_vector() : std::vector<float>();
  Tensor out = f32_like(x);
  int64_t r = 0;
  for (size_t b = 0; b < rows.size(); ++b)
    for (int64_t i = 0; i < rows[b]; ++i, ++r)
      for (int64_t n = 0; n < N; ++n) {
        const double g = gv.empty() ? 1.0 : gv[b * size_t(N) + size_t(n)];
        out.f32()[r * N + n] = float(xv[size_t(r * N + n)] + g * yv[size_t(r * N + n)]);
      }
  return out;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* b, int64_t st, Padding2d p) {
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  const int64_t OH = (H + p.top + p.bottom - kh) / st + 1, OW = (W + p.left + p.right - kw) / st + 1;
  const auto xv = x.to_vector(), wv = w.to_vector();
  std::vector<float> bv;
  if (b) bv = b->to_vector();
  Tensor y = Tensor::empty(DType::F32, {N, O, OH, OW});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double acc = b ? bv[size_t(o)] : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ih = oh * st + i - p.top, iw = ow * st + j - p.left;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc +=
                    double(xv[size_t(((n * C + c) * H + ih) * W + iw)]) * wv[size_t(((o * C + c) * kh + i) * kw + j)];
              }
          y.f32()[((n * O + o) * OH + oh) * OW + ow] = float(acc);
        }
  return y;
}

Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps, bool silu) {
  const int64_t B = x.dim(0), C = x.dim(1), HW = x.numel() / (B * C), cpg = C / groups;
  const auto xv = x.to_vector(), wv = weight.to_vector(), bv = bias.to_vector();
  Tensor y = f32_like(x);
  for (int64_t n = 0; n < B; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      const size_t o = size_t((n * C + g * cpg) * HW), cnt = size_t(cpg * HW);
      double m = 0, v = 0;
      for (size_t i = 0; i < cnt; ++i) m += xv[o + i];
      m /= double(cnt);
      for (size_t i = 0; i < cnt; ++i) v += (xv[o + i] - m) * (xv[o + i] - m);
      const double inv = 1.0 / std::sqrt(v / double(cnt) + eps);
      for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c)
        for (int64_t i = 0; i < HW; ++i) {
          const size_t k = size_t((n * C + c) * HW + i);
          const double t = (xv[k] - m) * inv * wv[size_t(c)] + bv[size_t(c)];
          y.f32()[k] = float(silu ? sigmoid_x(t) : t);
        }
    }
  return y;
}

Tensor upsample_nearest2x(const Tensor& x) {
  const int64_t B = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const auto xv = x.to_vector();
  Tensor y = Tensor::empty(DType::F32, {B, C, 2 * H, 2 * W});
  for (int64_t p = 0; p < B * C; ++p)
    for (int64_t h = 0; h < 2 * H; ++h)
      for (int64_t w = 0; w < 2 * W; ++w)
        y.f32()[(p * 2 * H + h) * 2 * W + w] = xv[size_t((p * H + h / 2) * W + w / 2)];
  return y;
}

}  // namespace zimage::ops::ref
