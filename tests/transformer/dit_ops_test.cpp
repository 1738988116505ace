// The transformer's own ops (src/ops/rope_interleaved.cpp, modulation.cpp) and patchify, against
// plain formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>

#include "ops/ops.h"
#include "transformer/patchify.h"
#include "transformer/rope_embedder.h"
#include "util/test_util.h"

namespace zimage {
namespace {

using test::randn;

TEST(DitOps, RopeInterleavedIsComplexMultiplication) {
  const int64_t T = 5, H = 3, D = 8;
  Tensor x = randn({T, H, D}, 1), cs = Tensor::empty(DType::F32, {T, D / 2, 2});
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D / 2; ++i) {
      const double a = 0.37 * double(t + 1) * double(i + 1);
      cs.f32()[(t * D / 2 + i) * 2] = float(std::cos(a));
      cs.f32()[(t * D / 2 + i) * 2 + 1] = float(std::sin(a));
    }
  Tensor y = x.clone();
  ops::rope_interleaved_(y, cs);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < D / 2; ++i) {
        const float* xv = x.f32() + (t * H + h) * D;
        std::complex<double> z(xv[2 * i], xv[2 * i + 1]);
        std::complex<double> r(cs.f32()[(t * D / 2 + i) * 2], cs.f32()[(t * D / 2 + i) * 2 + 1]);
        const auto want = z * r;
        EXPECT_NEAR(y.f32()[(t * H + h) * D + 2 * i], want.real(), 1e-5);
        EXPECT_NEAR(y.f32()[(t * H + h) * D + 2 * i + 1], want.imag(), 1e-5);
      }
  Tensor bad = Tensor::empty(DType::F32, {T, D / 2 + 1, 2});
  EXPECT_THROW(ops::rope_interleaved_(y, bad), Error);
}

TEST(DitOps, ModulateAndGateAddUseEachItemsRows) {
  const int64_t N = 4;
  const std::vector<int64_t> rows{2, 3};
  Tensor x = randn({5, N}, 2), y = randn({5, N}, 3), s = randn({2, N}, 4), g = randn({2, N}, 5);
  Tensor m = ops::modulate(x, s, rows, DType::F32);
  Tensor xa = x.clone();
  ops::gate_add_(xa, g, y, rows, DType::F32);
  Tensor xb = x.clone(), xbf = x.clone();
  ops::gate_add_(xb, Tensor(), y, rows, DType::F32);
  ops::gate_add_(xbf, g, y, rows, DType::BF16);
  for (int64_t r = 0; r < 5; ++r) {
    const int64_t b = r < 2 ? 0 : 1;
    for (int64_t i = 0; i < N; ++i) {
      const float xv = x.f32()[r * N + i], yv = y.f32()[r * N + i], gv = g.f32()[b * N + i];
      EXPECT_FLOAT_EQ(m.f32()[r * N + i], xv * s.f32()[b * N + i]);
      EXPECT_FLOAT_EQ(xa.f32()[r * N + i], xv + gv * yv);
      EXPECT_FLOAT_EQ(xb.f32()[r * N + i], xv + yv);
      EXPECT_EQ(xbf.f32()[r * N + i], round_bf16(xv + round_bf16(gv * yv)));
    }
  }
  EXPECT_THROW(ops::modulate(x, s, {2, 2}, DType::F32), Error);    // rows do not cover x
  EXPECT_THROW(ops::gate_add_(xa, g, y, {5}, DType::F32), Error);  // 1 row count for 2 gates
}

TEST(DitOps, Bf16StorageRoundsIntermediates) {
  Tensor a = randn({3, 7}, 6), b = randn({3, 7}, 7), w = randn({7}, 8);
  Tensor sm = ops::silu_mul_as(a, b, DType::BF16);
  Tensor rn = ops::rms_norm_as(a, w, 1e-5f, DType::BF16);
  Tensor rn32 = ops::rms_norm_as(a, w, 1e-5f, DType::F32);
  for (int64_t r = 0; r < 3; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < 7; ++i) ss += double(a.f32()[r * 7 + i]) * a.f32()[r * 7 + i];
    const float inv = float(1.0 / std::sqrt(ss / 7 + 1e-5));
    for (int64_t i = 0; i < 7; ++i) {
      const float av = a.f32()[r * 7 + i];
      EXPECT_EQ(sm.f32()[r * 7 + i], round_bf16(round_bf16(av / (1.f + std::exp(-av))) * b.f32()[r * 7 + i]));
      EXPECT_NEAR(rn32.f32()[r * 7 + i], av * inv * w.f32()[i], 1e-5);
      EXPECT_NEAR(rn.f32()[r * 7 + i], round_bf16(round_bf16(av * inv) * w.f32()[i]),
                  1e-2 * std::fabs(rn32.f32()[r * 7 + i]) + 1e-6);
      EXPECT_EQ(rn.f32()[r * 7 + i], round_bf16(rn.f32()[r * 7 + i]));  // holds bf16 values
    }
  }
}

TEST(DitOps, PatchifyOrderAndRoundTrip) {
  transformer::PatchGrid g{3, 1, 4, 6, 1, 2, 2};  // C=3, F=1, H=4, W=6, patch (1, 2, 2)
  Tensor img = randn({3, 1, 4, 6}, 9);
  std::vector<float> tok(size_t(g.tokens() * g.patch_dim()));
  transformer::patchify(img, g, tok.data());
  ASSERT_EQ(g.tokens(), 6);
  ASSERT_EQ(g.patch_dim(), 12);
  // "c (f pf) (h ph) (w pw) -> (f h w) (pf ph pw c)": token (h=1, w=2), ph=1, pw=0, c=2
  const int64_t token = 1 * 3 + 2, j = (1 * 2 + 0) * 3 + 2;
  EXPECT_EQ(tok[size_t(token * 12 + j)], img.f32()[(2 * 4 + (1 * 2 + 1)) * 6 + 2 * 2 + 0]);
  Tensor back = transformer::unpatchify(tok.data(), g);
  EXPECT_EQ(rel_l2(back, img), 0.0);
}

TEST(DitOps, RopeEmbedderTablesAndRange) {
  transformer::RopeEmbedder rope(256.0, {4, 2, 2}, {8, 4, 4});
  Tensor cs = rope({{3, 1, 2}});
  ASSERT_EQ(cs.shape(), (Shape{1, 4, 2}));
  // axis 0, pair k=1: angle = 3 / 256^(2/4); axis 1: angle = 1; axis 2: angle = 2
  EXPECT_NEAR(cs.f32()[2], std::cos(3.0 / 16.0), 1e-7);
  EXPECT_NEAR(cs.f32()[3], std::sin(3.0 / 16.0), 1e-7);
  EXPECT_NEAR(cs.f32()[4], std::cos(1.0), 1e-7);
  EXPECT_NEAR(cs.f32()[7], std::sin(2.0), 1e-7);
  EXPECT_THROW(rope({{8, 0, 0}}), Error);
}

}  // namespace
}  // namespace zimage
