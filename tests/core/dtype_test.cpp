#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "core/dtype.h"
#include "core/tensor.h"

using namespace zimage;

// Reference rounding through double arithmetic: nearest representable value, ties to even.
TEST(DType, Bf16RoundToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (down).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3*2^-8 is halfway and rounds up to the even mantissa.
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()), 0x7fc0);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(3.4e38f), 0x7f80);  // rounds past the largest bf16 to inf, as torch
}

TEST(DType, F16MatchesHardwareConversion) {
  // F16C (vcvtps2ph with round-to-nearest-even) is the hardware reference on x86.
  std::mt19937 g(1);
  std::uniform_int_distribution<uint32_t> u;
  for (int i = 0; i < 200000; ++i) {
    float f = f32_from_bits(u(g));
    if (std::isnan(f)) continue;
    uint16_t hw = uint16_t(__builtin_ia32_vcvtps2ph(__extension__(__m128){f, 0, 0, 0}, 0)[0]);
    ASSERT_EQ(f32_to_f16(f), hw) << f;
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    float hw = __builtin_ia32_vcvtph2ps(__extension__(__v8hi){short(h), 0, 0, 0, 0, 0, 0, 0})[0];
    float sw = f16_to_f32(uint16_t(h));
    if (std::isnan(hw)) {
      ASSERT_TRUE(std::isnan(sw));
      continue;
    }
    ASSERT_EQ(f32_bits(sw), f32_bits(hw)) << h;
  }
}

TEST(DType, ParseNames) {
  EXPECT_EQ(parse_dtype("bf16"), DType::BF16);
  EXPECT_EQ(parse_dtype("float32"), DType::F32);
  EXPECT_EQ(parse_dtype("fp16"), DType::F16);
  EXPECT_THROW(parse_dtype("int8"), Error);
}

TEST(Tensor, ViewsAndConversions) {
  Tensor t = Tensor::from_f32({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor s = t.slice0(1, 2);
  EXPECT_EQ(s.shape(), (Shape{1, 3}));
  EXPECT_EQ(s.f32()[0], 4.f);
  Tensor b = t.to(DType::BF16);
  EXPECT_EQ(b.dtype(), DType::BF16);
  EXPECT_EQ(b.to_vector()[5], 6.f);
  EXPECT_THROW(Tensor::empty(DType::F32, {-1}), Error);
  EXPECT_THROW(Tensor::empty(DType::F32, {int64_t(1) << 40, 1 << 20}), Error);
}
