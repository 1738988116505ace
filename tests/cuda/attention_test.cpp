// attention() (flash with both fragment paths, and native) against the double-precision CPU
// reference: grouped-query heads, key padding lengths, causal masks with Sq != Sk, tile edges.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cuda/attention_internal.h"
#include "backend/cuda/ops.h"
#include "cuda/cuda_test_util.h"
#include "ops/ops.h"

namespace zimage::cuda {
namespace {

using test::random_tensor;

struct AttnCase {
  int64_t B, Sq, Sk, Hq, Hkv, D;
  bool causal;
  std::vector<int64_t> key_valid;
};

enum class Path { FlashLdmatrix, FlashPlainLoads, NativeBF16, NativeF32 };

std::string path_name(Path p) {
  switch (p) {
    case Path::FlashLdmatrix:
      return "FlashLdmatrix";
    case Path::FlashPlainLoads:
      return "FlashPlainLoads";
    case Path::NativeBF16:
      return "NativeBF16";
    default:
      return "NativeF32";
  }
}

void check(const AttnCase& c, Path path, uint64_t seed) {
  const bool f32 = path == Path::NativeF32;
  const DType dt = f32 ? DType::F32 : DType::BF16;
  // Scores of a few units so the softmax is neither flat nor one-hot.
  const Tensor q = random_tensor({c.B, c.Sq, c.Hq, c.D}, seed, -1.f, 1.f, !f32);
  const Tensor k = random_tensor({c.B, c.Sk, c.Hkv, c.D}, seed + 1, -1.f, 1.f, !f32);
  const Tensor v = random_tensor({c.B, c.Sk, c.Hkv, c.D}, seed + 2, -1.f, 1.f, !f32);
  const float scale = 1.f / std::sqrt(float(c.D));
  const Tensor want = ops::ref::attention(q, k, v, scale, c.causal, c.key_valid);
  const AttentionBackend be = (path == Path::FlashLdmatrix || path == Path::FlashPlainLoads) ? AttentionBackend::Flash
                                                                                             : AttentionBackend::Native;
  set_flash_use_ldmatrix(path != Path::FlashPlainLoads);
  const DeviceTensor got = attention(DeviceTensor::upload(q, dt), DeviceTensor::upload(k, dt),
                                     DeviceTensor::upload(v, dt), scale, c.causal, c.key_valid, be);
  set_flash_use_ldmatrix(true);
  EXPECT_EQ(got.dtype(), dt);
  EXPECT_LE(test::rel_err(got, want), test::tol_for(dt))
      << path_name(path) << " B=" << c.B << " Sq=" << c.Sq << " Sk=" << c.Sk << " Hq=" << c.Hq << " Hkv=" << c.Hkv
      << " causal=" << c.causal;
}

class CudaAttention : public ::testing::TestWithParam<Path> {};

TEST_P(CudaAttention, FullSelfAttentionOffTileSizes) {
  ZI_REQUIRE_GPU();
  check({1, 150, 150, 2, 2, 128, false, {}}, GetParam(), 1);
}

TEST_P(CudaAttention, GroupedQueryHeadsAndKeyPadding) {
  ZI_REQUIRE_GPU();
  check({2, 97, 131, 4, 2, 128, false, {131, 70}}, GetParam(), 2);
}

TEST_P(CudaAttention, CausalWithMoreKeysThanQueries) {
  ZI_REQUIRE_GPU();
  check({2, 70, 200, 2, 1, 128, true, {200, 150}}, GetParam(), 3);
}

TEST_P(CudaAttention, CausalSquare) {  // the text encoder's case
  ZI_REQUIRE_GPU();
  check({1, 129, 129, 4, 4, 128, true, {}}, GetParam(), 4);
}

TEST_P(CudaAttention, ItemWithNoKeysGivesZeros) {
  ZI_REQUIRE_GPU();
  check({2, 40, 64, 2, 2, 128, false, {0, 64}}, GetParam(), 5);
  const Tensor q = random_tensor({1, 8, 2, 128}, 6), k = random_tensor({1, 8, 2, 128}, 7);
  const DType dt = GetParam() == Path::NativeF32 ? DType::F32 : DType::BF16;
  const DeviceTensor o = attention(DeviceTensor::upload(q, dt), DeviceTensor::upload(k, dt),
                                   DeviceTensor::upload(k, dt), 0.1f, false, {0});
  for (float x : o.download().to_vector()) ASSERT_EQ(x, 0.f);
}

INSTANTIATE_TEST_SUITE_P(Paths, CudaAttention,
                         ::testing::Values(Path::FlashLdmatrix, Path::FlashPlainLoads, Path::NativeBF16,
                                           Path::NativeF32),
                         [](const auto& info) { return path_name(info.param); });

TEST(CudaAttentionNative, OtherHeadDims) {  // the tiny fixtures use head dim 32
  ZI_REQUIRE_GPU();
  check({2, 33, 45, 2, 1, 32, false, {45, 20}}, Path::NativeF32, 8);
  check({1, 20, 20, 3, 3, 64, true, {}}, Path::NativeBF16, 9);
}

TEST(CudaAttentionFlash, LongSequenceAgainstCpuFlash) {  // several key tiles per block, 1k tokens
  ZI_REQUIRE_GPU();
  const int64_t S = 1100, H = 2, D = 128;
  const Tensor q = random_tensor({1, S, H, D}, 10, -1.f, 1.f, true),
               k = random_tensor({1, S, H, D}, 11, -1.f, 1.f, true);
  const Tensor v = random_tensor({1, S, H, D}, 12, -1.f, 1.f, true);
  const float scale = 1.f / std::sqrt(float(D));
  const Tensor want = ops::attention(q, k, v, scale, false);
  const DeviceTensor got = attention(DeviceTensor::upload(q, DType::BF16), DeviceTensor::upload(k, DType::BF16),
                                     DeviceTensor::upload(v, DType::BF16), scale, false, {}, AttentionBackend::Flash);
  EXPECT_LE(test::rel_err(got, want), test::kBF16Tol);
}

TEST(CudaAttentionErrors, RejectsBadShapes) {
  ZI_REQUIRE_GPU();
  const DeviceTensor q = DeviceTensor::upload(random_tensor({1, 4, 3, 32}, 1), DType::BF16);
  const DeviceTensor k = DeviceTensor::upload(random_tensor({1, 4, 2, 32}, 2), DType::BF16);
  EXPECT_THROW(attention(q, k, k, 1.f, false), Error);                               // 3 % 2 heads
  EXPECT_THROW(attention(q, q, q, 1.f, false, {}, AttentionBackend::Flash), Error);  // D = 32
  EXPECT_THROW(attention(q, q, q, 1.f, false, {1, 2}), Error);                       // 2 lengths, B = 1
}

}  // namespace
}  // namespace zimage::cuda
