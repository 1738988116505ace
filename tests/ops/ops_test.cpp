#include <gtest/gtest.h>

#include <random>

#include "ops/ops.h"

using namespace zimage;

namespace {
Tensor randt(Shape s, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.f, scale);
  Tensor t = Tensor::empty(DType::F32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = n(g);
  return t;
}
}  // namespace

TEST(Linear, F32MatchesReference) {
  Tensor x = randt({3, 5, 24}, 1), w = randt({17, 24}, 2), b = randt({17}, 3);
  Tensor y = ops::linear(x, w, &b), r = ops::ref::linear(x, w, &b);
  EXPECT_EQ(y.shape(), (Shape{3, 5, 17}));
  EXPECT_LT(rel_l2(y, r), 1e-6);
}

TEST(Linear, Bf16RoundsInputsAndAccumulatesInF32) {
  Tensor x = randt({7, 64}, 4), w = randt({33, 64}, 5);
  Tensor wb = w.to(DType::BF16);
  Tensor y = ops::linear(x, wb);
  Tensor xr = x.clone();
  ops::round_to_bf16_(xr);
  Tensor r = ops::ref::linear(xr, wb);
  EXPECT_LT(rel_l2(y, r), 1e-6);
}

TEST(Linear, ShapeErrorNamesShapes) {
  Tensor x = randt({2, 5}, 1), w = randt({3, 4}, 2);
  try {
    ops::linear(x, w);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 5]"), std::string::npos) << e.what();
  }
}

struct AttnCase {
  int64_t B, Sq, Sk, Hq, Hkv, D;
  bool causal;
  std::vector<int64_t> valid;
};

class AttentionTest : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionTest, MatchesReference) {
  auto c = GetParam();
  Tensor q = randt({c.B, c.Sq, c.Hq, c.D}, 7), k = randt({c.B, c.Sk, c.Hkv, c.D}, 8),
         v = randt({c.B, c.Sk, c.Hkv, c.D}, 9);
  float scale = 1.f / std::sqrt(float(c.D));
  Tensor y = ops::attention(q, k, v, scale, c.causal, c.valid);
  Tensor r = ops::ref::attention(q, k, v, scale, c.causal, c.valid);
  EXPECT_LT(rel_l2(y, r), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Values(AttnCase{1, 5, 5, 2, 2, 8, false, {}},
                                           AttnCase{2, 70, 300, 4, 2, 16, false, {300, 131}},
                                           AttnCase{1, 40, 40, 4, 1, 8, true, {}},
                                           AttnCase{2, 200, 200, 3, 3, 32, false, {200, 64}},
                                           AttnCase{1, 33, 33, 2, 2, 128, true, {20}}));

TEST(Norms, RmsNormAndLayerNorm) {
  Tensor x = randt({4, 10}, 11), w = randt({10}, 12);
  Tensor y = ops::rms_norm(x, w, 1e-6f);
  for (int r = 0; r < 4; ++r) {
    double ss = 0;
    for (int i = 0; i < 10; ++i) ss += double(x.f32()[r * 10 + i]) * x.f32()[r * 10 + i];
    double inv = 1 / std::sqrt(ss / 10 + 1e-6);
    for (int i = 0; i < 10; ++i) EXPECT_NEAR(y.f32()[r * 10 + i], x.f32()[r * 10 + i] * inv * w.f32()[i], 1e-5);
  }
  Tensor z = ops::layer_norm(x, Tensor(), Tensor(), 1e-6f);
  for (int r = 0; r < 4; ++r) {
    double m = 0, v = 0;
    for (int i = 0; i < 10; ++i) m += z.f32()[r * 10 + i];
    for (int i = 0; i < 10; ++i) v += double(z.f32()[r * 10 + i]) * z.f32()[r * 10 + i];
    EXPECT_NEAR(m / 10, 0, 1e-5);
    EXPECT_NEAR(v / 10, 1, 1e-4);
  }
}
