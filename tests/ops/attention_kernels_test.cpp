// The AVX-512 attention kernels against the double-precision reference (f32 path), against the
// plain loops that emulate torch's bf16 flash attention (bf16 path), their exp, and their
// independence from the thread count. Shapes cross the 512-key softmax block, the 48-row query
// block and the 16-wide head-dim vectors at their edges.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "backend/cpu/kernels.h"
#include "ops/ops.h"

namespace zimage {
namespace {

Tensor randn(Shape s, uint32_t seed, bool bf16, float sd = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, sd);
  Tensor t = Tensor::empty(DType::F32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = bf16 ? round_bf16(nd(g)) : nd(g);
  return t;
}

struct Case {
  int64_t B, Sq, Sk, Hq, Hkv, D;
  bool causal;
  std::vector<int64_t> valid;
};

std::string describe(const Case& c) {
  // Appended piece by piece: GCC 12 reports a false -Wrestrict in `"literal" + std::string&&`
  // (the insert at position 0) at -O3 (GCC bug 105329).
  std::string s;
  for (auto [label, v] : {std::pair<const char*, int64_t>{"B", c.B},
                          {" Sq", c.Sq},
                          {" Sk", c.Sk},
                          {" H", c.Hq},
                          {"/", c.Hkv},
                          {" D", c.D}})
    s.append(label).append(std::to_string(v));
  if (c.causal) s += " causal";
  return s;
}

const std::vector<Case> kCases = {
    {1, 600, 600, 2, 2, 128, false, {}},           // two key blocks, query tail of 600 % 48
    {1, 600, 600, 4, 2, 128, true, {}},            // causal, grouped-query heads
    {2, 130, 1100, 2, 1, 40, false, {1100, 517}},  // three key blocks, head dim 40 (vector tail), padding mask
    {1, 50, 530, 3, 3, 8, true, {}},               // causal with Sk > Sq (offset), tiny head dim
    {1, 70, 40, 2, 2, 16, true, {}},               // causal with Sq > Sk: the first rows see no key
    {2, 33, 33, 2, 2, 32, false, {0, 5}},          // a batch item with every key masked
};

TEST(AttentionKernels, F32MatchesDoubleReference) {
  for (const Case& c : kCases) {
    Tensor q = randn({c.B, c.Sq, c.Hq, c.D}, 1, false), k = randn({c.B, c.Sk, c.Hkv, c.D}, 2, false),
           v = randn({c.B, c.Sk, c.Hkv, c.D}, 3, false);
    const float scale = 1.f / std::sqrt(float(c.D));
    Tensor y = ops::attention(q, k, v, scale, c.causal, c.valid);
    Tensor r = ops::ref::attention(q, k, v, scale, c.causal, c.valid);
    EXPECT_LT(rel_l2(y, r), 1e-6) << describe(c);
    // Rows with no visible key are exactly zero, as the reference.
    double worst = 0;
    for (int64_t i = 0; i < y.numel(); ++i) worst = std::max(worst, double(std::fabs(y.f32()[i] - r.f32()[i])));
    EXPECT_LT(worst, 1e-5) << describe(c);
  }
}

TEST(AttentionKernels, F32PeakedSoftmaxStaysAccurate) {
  // Large scores (sd 3 inputs: |score| up to ~100) stress the running max and the exp.
  const Case c{1, 300, 700, 2, 2, 64, false, {}};
  Tensor q = randn({c.B, c.Sq, c.Hq, c.D}, 4, false, 3.f), k = randn({c.B, c.Sk, c.Hkv, c.D}, 5, false, 3.f),
         v = randn({c.B, c.Sk, c.Hkv, c.D}, 6, false);
  Tensor y = ops::attention(q, k, v, 0.125f, false);
  Tensor r = ops::ref::attention(q, k, v, 0.125f, false);
  EXPECT_LT(rel_l2(y, r), 1e-6);
}

// The bf16 path changes only summation order and the exp implementation relative to the plain
// emulation loops: nearly all outputs are bit-identical bf16 values. (A 1-ulp exp difference can
// flip a probability's bf16 rounding, so a few outputs move by more than one bf16 step.)
class Bf16Kernel : public ::testing::TestWithParam<bool> {};  // param: AMX tiles, or AVX-512 BF16

TEST_P(Bf16Kernel, MatchesPlainEmulation) {
  const bool amx = GetParam();
  if (!cpu::cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  if (amx && !cpu::cpu_has_amx_bf16()) GTEST_SKIP() << "no AMX-BF16 on this CPU / OS";
  for (const Case& c : kCases) {
    Tensor q = randn({c.B, c.Sq, c.Hq, c.D}, 7, true), k = randn({c.B, c.Sk, c.Hkv, c.D}, 8, true),
           v = randn({c.B, c.Sk, c.Hkv, c.D}, 9, true);
    const float scale = 1.f / std::sqrt(float(c.D));
    Tensor y = Tensor::empty(DType::F32, q.shape()), p = Tensor::empty(DType::F32, q.shape());
    const int64_t* kv = c.valid.empty() ? nullptr : c.valid.data();
    cpu::attention_torch_bf16_avx512(q.f32(), k.f32(), v.f32(), y.f32(), c.B, c.Sq, c.Sk, c.Hq, c.Hkv, c.D, scale,
                                     c.causal, kv, amx);
    cpu::attention_torch_bf16_generic(q.f32(), k.f32(), v.f32(), p.f32(), c.B, c.Sq, c.Sk, c.Hq, c.Hkv, c.D, scale,
                                      c.causal, kv);
    int64_t differ = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      EXPECT_EQ(y.f32()[i], round_bf16(y.f32()[i]));
      differ += y.f32()[i] != p.f32()[i];
    }
    // Measured: ~0.13 % of outputs differ, rel L2 ~1e-4.
    EXPECT_LE(differ, y.numel() / 200) << describe(c);
    EXPECT_LT(rel_l2(y, p), 5e-4) << describe(c);
    // And it is attention: close to the exact result at bf16 precision.
    EXPECT_LT(rel_l2(y, ops::ref::attention(q, k, v, scale, c.causal, c.valid)), 1e-2) << describe(c);
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, Bf16Kernel, ::testing::Values(false, true),
                         [](const auto& info) { return std::string(info.param ? "Amx" : "Avx512Bf16"); });

TEST(AttentionKernels, ResultsDoNotDependOnThreadCount) {
  const Case c{1, 200, 700, 4, 2, 128, true, {}};
  Tensor q = randn({c.B, c.Sq, c.Hq, c.D}, 10, true), k = randn({c.B, c.Sk, c.Hkv, c.D}, 11, true),
         v = randn({c.B, c.Sk, c.Hkv, c.D}, 12, true);
  const int before = ops::num_threads();
  std::vector<std::vector<float>> f32, bf16;
  for (int n : {1, 2, 3, 7}) {
    ops::set_num_threads(n);
    f32.push_back(ops::attention(q, k, v, 0.1f, c.causal).to_vector());
    bf16.push_back(ops::attention_torch_bf16(q, k, v, 0.1f, c.causal).to_vector());
  }
  ops::set_num_threads(before);
  for (size_t i = 1; i < f32.size(); ++i) {
    EXPECT_EQ(f32[i], f32[0]) << i;
    EXPECT_EQ(bf16[i], bf16[0]) << i;
  }
}

TEST(AttentionKernels, ExpWithinTwoUlp) {
  std::vector<float> x;
  for (float t = -103.f; t < 88.7f; t += 0.00731f) x.push_back(t);
  for (float t = -1.f; t < 1.f; t += 1e-4f) x.push_back(t);
  std::vector<float> y(x.size());
  cpu::exp_f32(x.data(), y.data(), int64_t(x.size()));
  double worst_ulp = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(double(x[i]));
    // One ulp of the result, with the denormal spacing as the floor.
    const double ulp = std::max(std::ldexp(1.0, std::ilogb(want) - 23), std::ldexp(1.0, -149));
    worst_ulp = std::max(worst_ulp, std::fabs(y[i] - want) / ulp);
  }
  EXPECT_LE(worst_ulp, 2.0);
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> sp = {-inf, inf, 89.f, -120.f, 0.f, std::nanf("")}, sy(sp.size());
  cpu::exp_f32(sp.data(), sy.data(), int64_t(sp.size()));
  EXPECT_EQ(sy[0], 0.f);
  EXPECT_EQ(sy[1], inf);
  EXPECT_EQ(sy[2], inf);
  EXPECT_EQ(sy[3], 0.f);
  EXPECT_EQ(sy[4], 1.f);
  EXPECT_TRUE(std::isnan(sy[5]));
}

}  // namespace
}  // namespace zimage
