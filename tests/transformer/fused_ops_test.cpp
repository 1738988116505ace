// The bf16 block's fused passes (src/ops/modulation.cpp, linear_into) against the composition of
// the separate ops they replace, bit for bit; and the transformer's caption cache against a fresh
// model.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "ops/ops.h"
#include "transformer/transformer_z_image.h"
#include "util/test_util.h"

namespace zimage {
namespace {

// Normal values times `scale`, rounded to bf16 values when `bf16`.
Tensor randn(Shape s, uint32_t seed, float scale = 1.f, bool bf16 = true) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n;
  Tensor t = Tensor::empty(DType::F32, std::move(s));
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = bf16 ? round_bf16(n(g) * scale) : n(g) * scale;
  return t;
}

// Number of elements whose float bits differ (any dtype, compared as float values).
int64_t bit_diffs(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.numel(), b.numel());
  const auto x = a.to_vector(), y = b.to_vector();
  int64_t d = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) d += std::memcmp(&x[i], &y[i], sizeof(float)) != 0;
  return d;
}

const std::vector<int64_t> kRows{30, 41};  // two items
constexpr int64_t kT = 71, kN = 256;

TEST(FusedOps, RmsNormModulateEqualsComposition) {
  const Tensor x = randn({kT, kN}, 1, 3.f), w = randn({kN}, 2, 0.3f), s = randn({2, kN}, 3);
  for (const bool with_scale : {false, true})
    for (const bool with_weight : {false, true})
      for (const DType in : {DType::F32, DType::BF16}) {
        Tensor out = Tensor::empty(DType::BF16, {kT, kN});
        ops::rms_norm_modulate_bf16(x.to(in), with_weight ? w : Tensor(), with_scale ? s : Tensor(), kRows, 1e-5f, out);
        Tensor want = ops::rms_norm_as(x, with_weight ? w : Tensor(), 1e-5f, DType::BF16);
        if (with_scale) want = ops::modulate(want, s, kRows, DType::BF16);
        EXPECT_EQ(bit_diffs(out, want), 0) << with_scale << with_weight << dtype_name(in);
      }
}

TEST(FusedOps, RmsNormGateAddEqualsComposition) {
  const Tensor x = randn({kT, kN}, 4), w = randn({kN}, 5, 0.3f), g = randn({2, kN}, 6);
  const Tensor y = randn({kT, kN}, 7, 5.f, /*bf16=*/false);  // a raw f32 GEMM result
  Tensor yb = y.clone();
  ops::round_to_bf16_(yb);
  for (const bool with_gate : {false, true})
    for (const DType in : {DType::F32, DType::BF16}) {
      Tensor got = x.clone(), want = x.clone();
      ops::rms_norm_gate_add_bf16_(got, with_gate ? g : Tensor(), in == DType::F32 ? y : yb.to(DType::BF16), w, kRows,
                                   1e-5f);
      ops::gate_add_(want, with_gate ? g : Tensor(), ops::rms_norm_as(yb, w, 1e-5f, DType::BF16), kRows, DType::BF16);
      EXPECT_EQ(bit_diffs(got, want), 0) << with_gate << dtype_name(in);
      EXPECT_GT(bit_diffs(got, x), kT * kN / 2);  // it did add something
    }
}

TEST(FusedOps, HeadNormRopeEqualsComposition) {
  const int64_t H = 3, D = 16;
  const Tensor q = randn({kT, H, D}, 8, 2.f, false), cs = randn({kT, D / 2, 2}, 9, 1.f, false);
  const Tensor w = randn({D}, 10);
  Tensor got = q.clone(), want = q.clone();
  ops::head_norm_rope_bf16_(got, w, cs, 1e-5f);
  ops::round_to_bf16_(want);
  want = ops::rms_norm_as(want, w, 1e-5f, DType::BF16);
  ops::rope_interleaved_(want, cs);
  ops::round_to_bf16_(want);
  EXPECT_EQ(bit_diffs(got, want), 0);
  // No norm, no rope: rounding only (the v projection).
  Tensor v = q.clone(), v_want = q.clone();
  ops::head_norm_rope_bf16_(v, Tensor(), Tensor(), 1e-5f);
  ops::round_to_bf16_(v_want);
  EXPECT_EQ(bit_diffs(v, v_want), 0);
  Tensor bad = randn({kT, H, D + 1}, 1);
  EXPECT_THROW(ops::head_norm_rope_bf16_(bad, Tensor(), cs, 1e-5f), Error);
}

TEST(FusedOps, SiluMulEqualsComposition) {
  const Tensor a = randn({kT, kN}, 11, 4.f, false), b = randn({kT, kN}, 12, 1.f, false);
  Tensor ab = a.clone(), bb = b.clone();
  ops::round_to_bf16_(ab);
  ops::round_to_bf16_(bb);
  const Tensor want = ops::silu_mul_as(ab, bb, DType::BF16);
  for (const DType in : {DType::F32, DType::BF16}) {
    Tensor out = Tensor::empty(DType::BF16, {kT, kN});
    ops::silu_mul_bf16(in == DType::F32 ? a : ab.to(DType::BF16), in == DType::F32 ? b : bb.to(DType::BF16), out);
    EXPECT_EQ(bit_diffs(out, want), 0) << dtype_name(in);
  }
  Tensor small = Tensor::empty(DType::BF16, {kT, kN - 1});
  EXPECT_THROW(ops::silu_mul_bf16(a, b, small), Error);
}

TEST(FusedOps, LinearIntoTakesBf16InputWithoutChangingResults) {
  const Tensor x = randn({37, 384}, 13), w = randn({200, 384}, 14, 0.05f).to(DType::BF16);
  Tensor y = Tensor::empty(DType::F32, {37, 200});
  ops::linear_into(x.to(DType::BF16), w, nullptr, y);
  EXPECT_EQ(bit_diffs(y, ops::linear(x, w)), 0);
  EXPECT_EQ(bit_diffs(ops::linear(x.to(DType::BF16), w), ops::linear(x, w)), 0);
  Tensor wrong = Tensor::empty(DType::F32, {37, 199});
  EXPECT_THROW(ops::linear_into(x, w, nullptr, wrong), Error);
  Tensor bf_out_f32_w = Tensor::empty(DType::BF16, {37, 200});
  EXPECT_THROW(ops::linear_into(x, w.to(DType::F32), nullptr, bf_out_f32_w), Error);
}

// The context refiner's output is reused while the caption stays the same: the results must be
// exactly those of a model that never saw an earlier call, and a new caption must not reuse it.
TEST(FusedOps, CaptionCacheIsExact) {
  for (const DType compute : {DType::BF16, DType::F32}) {
    const std::string dir = test::fixture("models/tiny-bf16/transformer");
    const auto warm = ZImageTransformer2DModel::load(dir, compute);
    const int64_t C = warm.config().in_channels, F = warm.config().cap_feat_dim;
    const Tensor x1 = randn({C, 1, 8, 8}, 20, 1.f, false), x2 = randn({C, 1, 8, 8}, 21, 1.f, false);
    const Tensor cap = randn({7, F}, 22, 1.f, false), cap2 = randn({7, F}, 23, 1.f, false);
    warm.forward({x1}, {0.3f}, {cap});
    const Tensor hit = warm.forward({x2}, {0.7f}, {cap})[0];
    const Tensor miss = warm.forward({x2}, {0.7f}, {cap2})[0];
    const auto fresh = [&](const Tensor& c) {
      return ZImageTransformer2DModel::load(dir, compute).forward({x2}, {0.7f}, {c})[0];
    };
    EXPECT_EQ(bit_diffs(hit, fresh(cap)), 0) << dtype_name(compute);
    EXPECT_EQ(bit_diffs(miss, fresh(cap2)), 0) << dtype_name(compute);
    EXPECT_GT(bit_diffs(hit, miss), 0);
    // Same padded features, fewer real tokens (the last one was all zeros): the pad row becomes
    // cap_pad_token, so the cached result must not be reused.
    Tensor cap_z = cap.clone();
    for (int64_t j = 0; j < F; ++j) cap_z.f32()[6 * F + j] = 0.f;
    const Tensor cap6 = cap_z.slice0(0, 6).clone();
    warm.forward({x2}, {0.7f}, {cap_z});
    EXPECT_EQ(bit_diffs(warm.forward({x2}, {0.7f}, {cap6})[0], fresh(cap6)), 0) << dtype_name(compute);
  }
}

}  // namespace
}  // namespace zimage
