// The ops the text encoder added to src/ops: rope_rotate_half_ and attention_torch_bf16, against
// plain loops written from their definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ops/ops.h"

namespace zimage {
namespace {

Tensor randn(Shape s, uint32_t seed, bool bf16) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  Tensor t = Tensor::empty(DType::F32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = bf16 ? round_bf16(nd(g)) : nd(g);
  return t;
}

bool all_bf16(const Tensor& t) {
  for (float v : t.to_vector())
    if (round_bf16(v) != v) return false;
  return true;
}

TEST(TextEncoderOps, RopeRotateHalfMatchesFormula) {
  const int64_t S = 5, H = 3, D = 8;
  for (bool bf16 : {false, true}) {
    Tensor x = randn({S, H, D}, 1, bf16), cos = randn({S, D}, 2, bf16), sin = randn({S, D}, 3, bf16);
    Tensor y = x.clone();
    ops::rope_rotate_half_(y, cos, sin, bf16);
    auto r = [&](float v) { return bf16 ? round_bf16(v) : v; };
    double worst = 0;
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < D; ++i) {
          const float* xv = x.f32() + (s * H + h) * D;
          const float rot = i < D / 2 ? -xv[i + D / 2] : xv[i - D / 2];  // rotate_half
          const float want = r(r(xv[i] * cos.f32()[s * D + i]) + r(rot * sin.f32()[s * D + i]));
          worst = std::max(worst, double(std::fabs(y.f32()[(s * H + h) * D + i] - want)));
        }
    EXPECT_LE(worst, bf16 ? 0.0 : 1e-6) << "bf16=" << bf16;
    if (bf16) {
      EXPECT_TRUE(all_bf16(y));
    }
  }
  Tensor bad = randn({S, H, 7}, 4, false);
  EXPECT_THROW(ops::rope_rotate_half_(bad, randn({S, 7}, 5, false), randn({S, 7}, 6, false)), Error);
  Tensor x = randn({S, H, D}, 7, false);
  EXPECT_THROW(ops::rope_rotate_half_(x, randn({S + 1, D}, 8, false), randn({S + 1, D}, 9, false)), Error);
}

// One query row of torch's bf16 flash attention with a single key block (Sk <= 512), plainly.
std::vector<float> plain_row(const float* q, const Tensor& k, const Tensor& v, int64_t b, int64_t hk, int64_t nkeys,
                             float scale) {
  const int64_t Sk = k.dim(1), Hkv = k.dim(2), D = k.dim(3);
  std::vector<float> s(static_cast<size_t>(nkeys)), out(static_cast<size_t>(D), 0.f);
  float mx = -INFINITY;
  for (int64_t j = 0; j < nkeys; ++j) {
    const float* kj = k.f32() + ((b * Sk + j) * Hkv + hk) * D;
    double d = 0;
    for (int64_t i = 0; i < D; ++i) d += double(q[i]) * kj[i];
    s[size_t(j)] = float(d) * scale;
    mx = std::max(mx, s[size_t(j)]);
  }
  float sum = 0;
  for (int64_t j = 0; j < nkeys; ++j) {
    const float e = std::exp(s[size_t(j)] - mx);
    sum += e;
    const float p = round_bf16(e);
    const float* vj = v.f32() + ((b * Sk + j) * Hkv + hk) * D;
    for (int64_t i = 0; i < D; ++i) out[size_t(i)] += p * vj[i];
  }
  for (auto& o : out) o = round_bf16(o * (1.f / sum));
  return out;
}

TEST(TextEncoderOps, AttentionTorchBf16SingleBlockMatchesPlain) {
  const int64_t B = 2, Sq = 37, Sk = 37, Hq = 4, Hkv = 2, D = 16;
  Tensor q = randn({B, Sq, Hq, D}, 10, true), k = randn({B, Sk, Hkv, D}, 11, true),
         v = randn({B, Sk, Hkv, D}, 12, true);
  const float scale = 0.25f;
  for (bool causal : {true, false}) {
    const std::vector<int64_t> valid = {Sk, 20};
    Tensor y = ops::attention_torch_bf16(q, k, v, scale, causal, valid);
    EXPECT_TRUE(all_bf16(y));
    int64_t differ = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < Sq; ++s)
        for (int64_t h = 0; h < Hq; ++h) {
          const int64_t nkeys = std::min(valid[size_t(b)], causal ? s + 1 : Sk);
          auto want = plain_row(q.f32() + ((b * Sq + s) * Hq + h) * D, k, v, b, h / (Hq / Hkv), nkeys, scale);
          const float* got = y.f32() + ((b * Sq + s) * Hq + h) * D;
          for (int64_t i = 0; i < D; ++i) differ += got[i] != want[size_t(i)];
        }
    // Only summation order differs from the plain loop: at most a rare 1-ulp flip.
    EXPECT_LE(differ, B * Sq * Hq * D / 200) << "causal=" << causal;
  }
}

TEST(TextEncoderOps, AttentionTorchBf16CloseToExactAttention) {
  // Several key blocks of 512 (online softmax across blocks), grouped-query heads, causal.
  const int64_t B = 1, S = 700, Hq = 2, Hkv = 1, D = 32;
  Tensor q = randn({B, S, Hq, D}, 20, true), k = randn({B, S, Hkv, D}, 21, true), v = randn({B, S, Hkv, D}, 22, true);
  for (bool causal : {true, false}) {
    Tensor y = ops::attention_torch_bf16(q, k, v, 0.2f, causal);
    Tensor want = ops::ref::attention(q, k, v, 0.2f, causal);
    const double err = rel_l2(y, want);
    EXPECT_LE(err, 1e-2) << "causal=" << causal;
    EXPECT_GT(err, 0.0);  // it does round to bf16
    EXPECT_TRUE(all_bf16(y));
  }
  EXPECT_THROW(ops::attention_torch_bf16(q, randn({B, S, 3, D}, 23, true), randn({B, S, 3, D}, 24, true), 1.f, true),
               Error);
}

}  // namespace
}  // namespace zimage
