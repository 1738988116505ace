#include "random/torch_generator.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "random/box_muller.h"
#include "random/randn_tensor.h"
#include "util/test_util.h"

namespace zimage::random {
namespace {

std::vector<uint32_t> bits_of(const Tensor& t) {
  std::vector<uint32_t> out(size_t(t.numel()));
  std::memcpy(out.data(), t.f32(), out.size() * 4);
  return out;
}

// Reference bit patterns printed by torch 2.15 (x86, AVX512 capability):
// torch.randn(n, generator=torch.Generator().manual_seed(s)).view(torch.int32)
TEST(TorchGenerator, ScalarPathMatchesTorchSeed0) {
  TorchGenerator g(0);
  const std::vector<uint32_t> want = {0x3fc53f5cu, 0xbe963c50u, 0xc00b7149u};
  EXPECT_EQ(bits_of(g.randn({3})), want);
}

TEST(TorchGenerator, VectorPathWithTailMatchesTorchSeed0) {
  TorchGenerator g(0);
  const std::vector<uint32_t> want = {0xbf901b85u, 0xbf93808au, 0xbe804bd6u, 0xbede255du, 0x3f194d8bu,
                                      0xbfc70d5bu, 0xbeaec6cau, 0x3fed2f4eu, 0x3eefaa55u, 0xbe217f5fu,
                                      0x3fb8c9dbu, 0x3e8837a1u, 0x3fb1d6c0u, 0x3fcb0d00u, 0x3f72409cu,
                                      0xbf57fb33u, 0x3f6e8c30u, 0x3fa12737u, 0x4000519au, 0x3d5c1b3au};
  EXPECT_EQ(bits_of(g.randn({4, 5})), want);
}

TEST(TorchGenerator, SuccessiveCallsContinueTheStreamLikeTorch) {
  // g = manual_seed(42); randn(1); randn(1) (uses the cached r*sin); randn(18)
  TorchGenerator g(42);
  EXPECT_EQ(bits_of(g.randn({1})), std::vector<uint32_t>{0x3eac62aeu});
  EXPECT_EQ(bits_of(g.randn({1})), std::vector<uint32_t>{0x3e03e69du});
  auto c = bits_of(g.randn({18}));
  EXPECT_EQ(c[0], 0x3f2dacd5u);
  EXPECT_EQ(c[1], 0xbf9e0591u);
  EXPECT_EQ(c[16], 0xbf178d59u);
  EXPECT_EQ(c[17], 0xbd812d24u);
}

TEST(TorchGenerator, ScalarDrawsComeInCachedPairs) {
  // Two scalar normals share one radius: a^2 + b^2 = -2 log1p(-u2) with u2 from the second
  // random64() of the stream.
  TorchGenerator g(123), raw(123);
  const double a = g.randn({1}).f32()[0];
  const double b = g.randn({1}).f32()[0];
  raw.random64();
  const double u2 = double(raw.random64() & ((uint64_t(1) << 53) - 1)) / 9007199254740992.0;
  EXPECT_NEAR(a * a + b * b, -2.0 * std::log1p(-u2), 1e-5);
  // The third draw needs new uniforms: the engine moved by exactly 4 words after it.
  g.randn({1});
  TorchGenerator h(123);
  for (int i = 0; i < 8; ++i) h.random();
  EXPECT_EQ(g.random(), h.random());
}

TEST(TorchGenerator, VectorPathConsumesNPlusSixteenWordsForATail) {
  for (int64_t n : {16, 17, 31, 32, 33, 100}) {
    TorchGenerator g(7), h(7);
    g.randn({n});
    const int64_t words = n + (n % 16 ? 16 : 0);
    for (int64_t i = 0; i < words; ++i) h.random();
    EXPECT_EQ(g.random(), h.random()) << "n=" << n;
  }
}

TEST(TorchGenerator, Random64IsHighThenLowWord) {
  TorchGenerator g(99), h(99);
  const uint64_t hi = h.random(), lo = h.random();
  EXPECT_EQ(g.random64(), (hi << 32) | lo);
}

TEST(TorchGenerator, LargeSeedsUseLow32BitsButKeepInitialSeed) {
  TorchGenerator a(5), b((uint64_t(1) << 32) + 5);
  EXPECT_EQ(b.initial_seed(), (uint64_t(1) << 32) + 5);
  EXPECT_EQ(bits_of(a.randn({17})), bits_of(b.randn({17})));
}

TEST(TorchGenerator, EmptyAndBadShapes) {
  TorchGenerator g(1), h(1);
  Tensor e = g.randn({0, 4});
  EXPECT_EQ(e.numel(), 0);
  EXPECT_EQ(g.random(), h.random());  // nothing consumed
  EXPECT_THROW(g.randn({2, -1}), Error);
}

TEST(TorchGenerator, CudaPhiloxSlotIsANamedError) {
  try {
    TorchGenerator g(0, GeneratorKind::CUDA_PHILOX);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[random] torch CUDA (Philox) generator is not implemented yet"),
              std::string::npos)
        << e.what();
  }
  EXPECT_STREQ(generator_kind_name(GeneratorKind::CPU), "cpu");
}

TEST(TorchGenerator, NormalStatistics) {
  TorchGenerator g(2024);
  const int64_t n = 1 << 20;
  Tensor t = g.randn({n});
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = t.f32()[i];
    ASSERT_TRUE(std::isfinite(v));
    s += v;
    s2 += v * v;
  }
  const double mean = s / double(n), var = s2 / double(n) - mean * mean;
  EXPECT_NEAR(mean, 0.0, 5e-3);  // 5 standard errors
  EXPECT_NEAR(var, 1.0, 7e-3);
}

TEST(BoxMuller, CephesLogAndSinCosAreAccurate) {
  double worst_log = 0, worst_sin = 0, worst_cos = 0;
  for (int i = 1; i <= 100000; ++i) {
    const float x = float(i) / 100000.0f;  // (0, 1]
    worst_log = std::max(worst_log, std::abs(double(cephes_logf(x)) - std::log(double(x))));
    const float t = float(i) * float(2.0 * M_PI / 100000.0);  // (0, 2 pi]
    float s, c;
    cephes_sincosf(t, &s, &c);
    worst_sin = std::max(worst_sin, std::abs(double(s) - std::sin(double(t))));
    worst_cos = std::max(worst_cos, std::abs(double(c) - std::cos(double(t))));
  }
  EXPECT_LT(worst_log, 2e-6);
  EXPECT_LT(worst_sin, 2e-7);
  EXPECT_LT(worst_cos, 2e-7);
  EXPECT_TRUE(std::isnan(cephes_logf(0.0f)));
  EXPECT_TRUE(std::isnan(cephes_logf(-1.0f)));
  EXPECT_EQ(cephes_logf(1.0f), 0.0f);
}

TEST(BoxMuller, ZeroUniformGivesZeroRadius) {
  // data[j] = 0 -> u1 = 1 -> log = 0 -> radius 0; fma(n, 1, 0) makes both outputs +0.
  float d[16];
  for (int j = 0; j < 16; ++j) d[j] = 0.75f;
  d[3] = 0.0f;
  normal_fill_16(d, 0.0f, 1.0f);
  EXPECT_EQ(std::bit_cast<uint32_t>(d[3]), 0u);
  EXPECT_EQ(std::bit_cast<uint32_t>(d[11]), 0u);
  EXPECT_NE(d[4], 0.0f);
}

// Every tensor of tests/fixtures/ref/randn.safetensors, bit for bit (made by
// tools/reference/make_fixtures.py with torch; seed and shape from randn_meta.json).
TEST(TorchGenerator, MatchesTorchFixtureBitForBit) {
  const std::string st = test::fixture("ref/randn.safetensors");
  const std::string meta_path = test::fixture("ref/randn_meta.json");
  ASSERT_TRUE(std::ifstream(st).good() && std::ifstream(meta_path).good()) << "missing fixture " << st;
  SafeTensorsFile file(st);
  const auto meta = nlohmann::json::parse(test::read_file(meta_path));
  ASSERT_TRUE(meta.is_array());
  ASSERT_EQ(meta.size(), file.tensors().size()) << "every tensor has a meta entry";
  size_t checked = 0, elements = 0;
  for (const auto& entry : meta) {
    const std::string name = entry.at("name").get<std::string>();
    const uint64_t seed = entry.at("seed").get<uint64_t>();
    const Shape shape = entry.at("shape").get<Shape>();
    // The name spells the same seed and shape: seed{S}_shape{a}x{b}...
    std::string dims;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i) dims += 'x';
      dims += std::to_string(shape[i]);
    }
    ASSERT_EQ(name, "seed" + std::to_string(seed) + "_shape" + dims);
    ASSERT_TRUE(file.has(name)) << name;
    Tensor ref = file.get(name);
    ASSERT_EQ(ref.shape(), shape) << name;
    TorchGenerator g(seed);
    Tensor got = g.randn(shape);
    const auto want_bits = bits_of(ref), got_bits = bits_of(got);
    size_t mismatches = 0, first = 0;
    for (size_t i = 0; i < want_bits.size(); ++i)
      if (want_bits[i] != got_bits[i] && mismatches++ == 0) first = i;
    EXPECT_EQ(mismatches, 0u) << name << ": first mismatch at " << first;
    ++checked;
    elements += want_bits.size();
  }
  EXPECT_GT(checked, 0u);
  std::printf("[ randn ] %zu tensors, %zu elements bit-identical checked\n", checked, elements);
}

TEST(RandnTensor, GeneratorListDrawsEachBatchItemSeparately) {
  TorchGenerator a(10), b(11);
  Tensor t = randn_tensor({2, 3, 4, 4}, std::vector<TorchGenerator*>{&a, &b});
  ASSERT_EQ(t.shape(), (Shape{2, 3, 4, 4}));
  TorchGenerator a2(10), b2(11);
  const auto first = bits_of(a2.randn({1, 3, 4, 4})), second = bits_of(b2.randn({1, 3, 4, 4}));
  const auto all = bits_of(t);
  EXPECT_TRUE(std::equal(first.begin(), first.end(), all.begin()));
  EXPECT_TRUE(std::equal(second.begin(), second.end(), all.begin() + 48));
  // ... which differs from one draw of the whole shape.
  TorchGenerator a3(10);
  EXPECT_NE(bits_of(a3.randn({2, 3, 4, 4})), all);
  // Generators advanced exactly like their separate draws.
  EXPECT_EQ(a.random(), a2.random());
  EXPECT_EQ(b.random(), b2.random());
}

TEST(RandnTensor, SingleGeneratorAndListOfOneDrawTheWholeShape) {
  TorchGenerator a(5), b(5), c(5);
  const auto whole = bits_of(a.randn({2, 3, 5}));
  EXPECT_EQ(bits_of(randn_tensor({2, 3, 5}, b)), whole);
  EXPECT_EQ(bits_of(randn_tensor({2, 3, 5}, std::vector<TorchGenerator*>{&c})), whole);
}

TEST(RandnTensor, ListErrors) {
  TorchGenerator a(1), b(2);
  EXPECT_THROW(randn_tensor({3, 4}, std::vector<TorchGenerator*>{&a, &b}), Error);  // too few
  EXPECT_THROW(randn_tensor({3, 4}, std::vector<TorchGenerator*>{}), Error);
  EXPECT_THROW(randn_tensor({}, std::vector<TorchGenerator*>{&a, &b}), Error);
  EXPECT_THROW(randn_tensor({2, 4}, std::vector<TorchGenerator*>{&a, nullptr}), Error);
  // More generators than batch items: the extra ones are unused, as in diffusers.
  TorchGenerator c(3);
  EXPECT_NO_THROW(randn_tensor({2, 4}, std::vector<TorchGenerator*>{&a, &b, &c}));
}

}  // namespace
}  // namespace zimage::random
