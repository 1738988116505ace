// linear() through cuBLASLt against the double-precision CPU reference.
#include <gtest/gtest.h>

#include <tuple>

#include "backend/cuda/ops.h"
#include "cuda/cuda_test_util.h"
#include "ops/ops.h"

namespace zimage::cuda {
namespace {

using test::random_tensor;

struct GemmCase {
  int64_t M, N, K;
  DType in, out;
  bool bias;
};

class CudaGemm : public ::testing::TestWithParam<GemmCase> {};

TEST_P(CudaGemm, MatchesReference) {
  ZI_REQUIRE_GPU();
  const GemmCase c = GetParam();
  const bool bf = c.in == DType::BF16;
  const Tensor x = random_tensor({c.M, c.K}, 11, -1.f, 1.f, bf);
  const Tensor w = random_tensor({c.N, c.K}, 12, -0.2f, 0.2f, bf);
  const Tensor b = random_tensor({c.N}, 13, -1.f, 1.f, bf);
  const Tensor want = ops::ref::linear(x, w, c.bias ? &b : nullptr);
  const DeviceTensor dx = DeviceTensor::upload(x, c.in), dw = DeviceTensor::upload(w, c.in);
  const DeviceTensor db = DeviceTensor::upload(b, DType::F32);
  const DeviceTensor y = linear(dx, dw, c.bias ? &db : nullptr, c.out);
  EXPECT_EQ(y.dtype(), c.out);
  // bf16 inputs hold exact bf16 values, so an f32 result has only f32 accumulation error.
  EXPECT_LE(test::rel_err(y, want), test::tol_for(c.out));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaGemm,
    ::testing::Values(
        GemmCase{64, 128, 256, DType::BF16, DType::BF16, false}, GemmCase{37, 96, 64, DType::BF16, DType::BF16, true},
        GemmCase{37, 96, 64, DType::BF16, DType::F32, true}, GemmCase{300, 200, 136, DType::BF16, DType::F32, false},
        GemmCase{1, 3840, 256, DType::BF16, DType::BF16, true},  // adaLN-like: one row
        GemmCase{256, 512, 1024, DType::BF16, DType::F32, true},
        GemmCase{40, 64, 170, DType::BF16, DType::BF16, false},  // tiny FFN w2: K % 8 != 0
        GemmCase{40, 170, 64, DType::BF16, DType::BF16, false},  // N % 8 != 0
        GemmCase{33, 65, 40, DType::F32, DType::F32, true}, GemmCase{128, 128, 512, DType::F32, DType::F32, false}));

TEST(CudaGemmErrors, RejectsMismatchedInputs) {
  ZI_REQUIRE_GPU();
  const DeviceTensor x = DeviceTensor::upload(random_tensor({4, 8}, 1), DType::BF16);
  const DeviceTensor w32 = DeviceTensor::upload(random_tensor({6, 8}, 2), DType::F32);
  const DeviceTensor w = DeviceTensor::upload(random_tensor({6, 7}, 2), DType::BF16);
  EXPECT_THROW(linear(x, w32, nullptr, DType::BF16), Error);  // dtype mismatch
  EXPECT_THROW(linear(x, w, nullptr, DType::BF16), Error);    // K mismatch
  const DeviceTensor w8 = DeviceTensor::upload(random_tensor({6, 8}, 2), DType::BF16);
  const DeviceTensor bad_bias = DeviceTensor::upload(random_tensor({5}, 3), DType::F32);
  EXPECT_THROW(linear(x, w8, &bad_bias, DType::BF16), Error);
  try {
    linear(x, w, nullptr, DType::BF16);
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("[linear]", 0), 0u) << e.what();
  }
}

TEST(CudaGemm, RepeatedShapesReuseThePlanAndStayCorrect) {
  ZI_REQUIRE_GPU();
  const Tensor w = random_tensor({48, 32}, 5, -0.5f, 0.5f, true);
  const DeviceTensor dw = DeviceTensor::upload(w, DType::BF16);
  for (int i = 0; i < 3; ++i) {  // fresh inputs each time, same shape
    const Tensor x = random_tensor({20, 32}, 100 + uint64_t(i), -1.f, 1.f, true);
    const DeviceTensor y = linear(DeviceTensor::upload(x, DType::BF16), dw, nullptr, DType::F32);
    EXPECT_LE(test::rel_err(y, ops::ref::linear(x, w)), test::kF32Tol) << "iteration " << i;
  }
}

}  // namespace
}  // namespace zimage::cuda
