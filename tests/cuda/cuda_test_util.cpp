#include "cuda/cuda_test_util.h"

#include "backend/cuda/allocator.h"

#include <cmath>
#include <random>

namespace zimage::cuda::test {

Tensor random_tensor(Shape shape, uint64_t seed, float lo, float hi, bool bf16_values) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  const int64_t n = shape_numel(shape);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = bf16_values ? round_bf16(dist(rng)) : dist(rng);
  return Tensor::from_f32(std::move(shape), v);
}

double rel_err(const DeviceTensor& got, const Tensor& want) {
  const Tensor g = got.download(DType::F32);
  EXPECT_EQ(g.shape(), want.shape());
  if (g.shape() != want.shape()) return 1e30;
  const std::vector<float> gv = g.to_vector();
  for (float x : gv)
    if (!std::isfinite(x)) return 1e30;  // NaN never passes
  return rel_l2(g, want);
}

}  // namespace zimage::cuda::test

namespace {
// Every block the allocator hands out during the tests starts as NaN (see set_poison).
class PoisonEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (zimage::cuda::available()) zimage::cuda::CachingAllocator::instance().set_poison(true);
  }
};
[[maybe_unused]] ::testing::Environment* const g_env = ::testing::AddGlobalTestEnvironment(new PoisonEnvironment);
}  // namespace
