// ops::conv2d / group_norm / upsample against plain loops (double accumulation; ops::ref).
#include <gtest/gtest.h>

#include <cmath>
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

struct Case {
  Shape x, w;
  int64_t stride;
  ops::Padding2d pad;
};
}  // namespace

// Both of the CPU backend's memory layouts: BackendOps.ConvBothLayouts (tests/backend).
TEST(Conv2d, F32MatchesReference) {
  const Case cases[] = {
      {{1, 16, 8, 12}, {32, 16, 3, 3}, 1, ops::Padding2d::same(1)},
      {{2, 3, 9, 7}, {5, 3, 3, 3}, 1, ops::Padding2d::same(1)},
      {{1, 16, 16, 24}, {16, 16, 3, 3}, 2, {0, 1, 0, 1}},  // Downsample2D: pad (0,1,0,1), stride 2
      {{1, 32, 5, 6}, {16, 32, 1, 1}, 1, {}},              // conv_shortcut
      {{1, 8, 7, 9}, {4, 8, 3, 3}, 2, {0, 1, 0, 1}},       // odd sizes
  };
  uint32_t seed = 10;
  for (const auto& c : cases) {
    Tensor x = randt(c.x, seed++), w = randt(c.w, seed++, 0.2f), b = randt({c.w[0]}, seed++);
    Tensor r = ops::ref::conv2d(x, w, &b, c.stride, c.pad);
    Tensor y = ops::conv2d(x, w, &b, c.stride, c.pad);
    ASSERT_EQ(y.shape(), r.shape()) << shape_str(c.x);
    EXPECT_LT(rel_l2(y, r), 1e-6) << shape_str(c.x);
    Tensor y0 = ops::conv2d(x, w, nullptr, c.stride, c.pad);
    EXPECT_LT(rel_l2(y0, ops::ref::conv2d(x, w, nullptr, c.stride, c.pad)), 1e-6);
  }
}

TEST(Conv2d, Bf16RoundsInputsAndAccumulatesInF32) {
  Tensor x = randt({1, 32, 10, 14}, 1), w = randt({16, 32, 3, 3}, 2, 0.1f), b = randt({16}, 3);
  Tensor wb = ops::prepare_conv_weight(w, DType::BF16);
  ASSERT_EQ(wb.dtype(), DType::BF16);
  Tensor xr = x.clone();
  ops::round_to_bf16_(xr);
  Tensor r = ops::ref::conv2d(xr, wb.to(DType::F32), &b, 1, ops::Padding2d::same(1));
  Tensor y = ops::conv2d(x, wb, &b, 1, ops::Padding2d::same(1));
  EXPECT_LT(rel_l2(y, r), 1e-5);
}

TEST(Conv2d, BadInputsNameTheValues) {
  Tensor x = randt({1, 16, 4, 4}, 1), w = randt({8, 12, 3, 3}, 2);
  try {
    ops::conv2d(x, w, nullptr, 1, ops::Padding2d::same(1));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("16 channels"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::conv2d(x, randt({8, 16, 3}, 3), nullptr, 1, {}), Error);
  EXPECT_THROW(ops::conv2d(randt({1, 16, 2, 2}, 3), randt({8, 16, 3, 3}, 4), nullptr, 1, {}), Error);
}

TEST(GroupNorm, MatchesDefinitionWithAndWithoutSilu) {
  Tensor x = randt({2, 12, 5, 7}, 7, 2.f), w = randt({12}, 8), b = randt({12}, 9);
  const int64_t G = 3, inner = 35, cpg = 4;
  Tensor y = ops::group_norm(x, G, w, b, 1e-6f), ys = ops::group_norm(x, G, w, b, 1e-6f, true);
  double err = 0, err_s = 0, norm = 0;
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t g = 0; g < G; ++g) {
      const float* xg = x.f32() + (n * 12 + g * cpg) * inner;
      double m = 0, v = 0;
      for (int64_t i = 0; i < cpg * inner; ++i) m += xg[i];
      m /= double(cpg * inner);
      for (int64_t i = 0; i < cpg * inner; ++i) v += (xg[i] - m) * (xg[i] - m);
      v /= double(cpg * inner);
      for (int64_t i = 0; i < cpg * inner; ++i) {
        const int64_t c = g * cpg + i / inner;
        const double r = (xg[i] - m) / std::sqrt(v + 1e-6) * w.f32()[c] + b.f32()[c];
        const double rs = r / (1 + std::exp(-r));
        const int64_t idx = (n * 12 + g * cpg) * inner + i;
        err += (y.f32()[idx] - r) * (y.f32()[idx] - r);
        err_s += (ys.f32()[idx] - rs) * (ys.f32()[idx] - rs);
        norm += r * r;
      }
    }
  EXPECT_LT(std::sqrt(err / norm), 1e-6);
  EXPECT_LT(std::sqrt(err_s / norm), 1e-6);
  try {
    ops::group_norm(x, 5, w, b, 1e-6f);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("12 channels are not divisible by 5 groups"), std::string::npos) << e.what();
  }
}

TEST(Upsample, Nearest2x) {
  Tensor x = randt({1, 2, 3, 4}, 11);
  Tensor y = ops::upsample_nearest2x(x);
  ASSERT_EQ(y.shape(), (Shape{1, 2, 6, 8}));
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t h = 0; h < 6; ++h)
      for (int64_t w = 0; w < 8; ++w) EXPECT_EQ(y.f32()[(c * 6 + h) * 8 + w], x.f32()[(c * 3 + h / 2) * 4 + w / 2]);
}
