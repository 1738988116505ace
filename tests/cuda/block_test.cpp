// Stage parity: the transformer's own ZImageTransformerBlock (src/transformer, unchanged) run on
// CUDA tensors through the op table (weights uploaded by the loader) against the same block on
// the CPU, with the tiny fixtures' real weights: float32 model in float32 (rel L2 <= 1e-4), bf16
// model in bf16 (<= 2e-2; same roundings as the CPU ops, other summation orders).
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cuda/backend.h"
#include "backend/cuda/ops.h"
#include "cuda/cuda_test_util.h"
#include "transformer/config.h"
#include "transformer/transformer_block.h"
#include "transformer/transformer_z_image.h"
#include "transformer/weights.h"
#include "util/test_util.h"

namespace zimage::cuda {
namespace {

using test::random_tensor;

struct BlockCase {
  std::string model;   // tiny-fp32 / tiny-bf16
  std::string prefix;  // layers.0. / noise_refiner.0. / context_refiner.0.
  bool modulation;
  std::vector<int64_t> rows;
};

class CudaBlock : public ::testing::TestWithParam<BlockCase> {};

TEST_P(CudaBlock, MatchesCpuBlock) {
  ZI_REQUIRE_GPU();
  const BlockCase c = GetParam();
  const std::string dir = zimage::test::fixture("models/" + c.model + "/transformer");
  const auto cfg = ZImageTransformerConfig::load(dir + "/config.json");
  const WeightStore store = WeightStore::open_dir(dir);
  const DType compute = c.model == "tiny-bf16" ? DType::BF16 : DType::F32;
  const bool bf = compute == DType::BF16;

  int64_t T = 0;
  for (int64_t n : c.rows) T += n;
  const int64_t B = int64_t(c.rows.size()), hd = cfg.dim / cfg.n_heads;
  const Tensor x = random_tensor({T, cfg.dim}, 1, -2.f, 2.f, bf);
  const Tensor adaln = random_tensor({B, cfg.adaln_dim()}, 2, -1.f, 1.f, bf);
  const Tensor ang = random_tensor({T, hd / 2}, 3, -3.f, 3.f);
  Tensor rope = Tensor::empty(DType::F32, {T, hd / 2, 2});
  for (int64_t i = 0; i < T * hd / 2; ++i) {
    rope.f32()[2 * i] = std::cos(ang.f32()[i]);
    rope.f32()[2 * i + 1] = std::sin(ang.f32()[i]);
  }

  const transformer::WeightLoader loader(store, compute, "transformer");
  const transformer::ZImageTransformerBlock cpu(loader, c.prefix, cfg, c.modulation);
  transformer::BlockBuffers cpu_buf;
  const Tensor want = cpu.forward(ops::Precision::of(compute, "test"), x.clone(), c.rows, rope,
                                  c.modulation ? adaln : Tensor(), cpu_buf);

  register_backend();
  transformer::WeightLoader gpu_loader(store, compute, "transformer");
  gpu_loader.set_device(Device::CUDA);
  const transformer::ZImageTransformerBlock gpu(gpu_loader, c.prefix, cfg, c.modulation);
  transformer::BlockBuffers gpu_buf;
  const Tensor got = gpu.forward(ops::Precision::of(compute, "test"), x.to(Device::CUDA), c.rows, rope.to(Device::CUDA),
                                 c.modulation ? adaln.to(Device::CUDA) : Tensor(), gpu_buf);
  ASSERT_EQ(got.device(), Device::CUDA);
  EXPECT_EQ(got.dtype(), DType::F32);
  const Tensor host = got.to(Device::CPU);
  EXPECT_LE(rel_l2(host, want), test::tol_for(compute)) << c.model << " " << c.prefix;
}

INSTANTIATE_TEST_SUITE_P(TinyFixtures, CudaBlock,
                         ::testing::Values(BlockCase{"tiny-fp32", "layers.0.", true, {40}},
                                           BlockCase{"tiny-fp32", "layers.1.", true, {24, 40}},
                                           BlockCase{"tiny-fp32", "noise_refiner.0.", true, {32, 16}},
                                           BlockCase{"tiny-fp32", "context_refiner.0.", false, {20, 12}},
                                           BlockCase{"tiny-bf16", "layers.0.", true, {40}},
                                           BlockCase{"tiny-bf16", "layers.1.", true, {24, 40}},
                                           BlockCase{"tiny-bf16", "context_refiner.0.", false, {20, 12}}),
                         [](const auto& info) {
                           return std::string(info.param.model == "tiny-bf16" ? "BF16_" : "F32_") +
                                  std::to_string(info.index);
                         });

// The whole tiny transformer loaded onto the GPU (ZImageTransformer2DModel::load(..., Device::CUDA))
// against the CPU model: two items of different sizes, twice (the second run takes the cached
// caption path).
TEST(CudaTransformer, TinyForwardMatchesCpu) {
  ZI_REQUIRE_GPU();
  register_backend();
  for (const char* model : {"tiny-fp32", "tiny-bf16"}) {
    SCOPED_TRACE(model);
    const std::string dir = zimage::test::fixture(std::string("models/") + model + "/transformer");
    const DType compute = std::string(model) == "tiny-bf16" ? DType::BF16 : DType::F32;
    const ZImageTransformer2DModel cpu = ZImageTransformer2DModel::load(dir, compute);
    const ZImageTransformer2DModel gpu = ZImageTransformer2DModel::load(dir, compute, "", {}, Device::CUDA);
    const int64_t C = cpu.config().in_channels, F = cpu.config().cap_feat_dim;
    const std::vector<Tensor> x{random_tensor({C, 1, 8, 8}, 11), random_tensor({C, 1, 6, 4}, 12)};
    const std::vector<Tensor> cap{random_tensor({7, F}, 13), random_tensor({12, F}, 14)};
    const std::vector<float> t{0.3f, 0.7f};
    const std::vector<Tensor> want = cpu.forward(x, t, cap);
    for (int run = 0; run < 2; ++run) {
      const std::vector<Tensor> got = gpu.forward(x, t, cap);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].device(), Device::CPU);
        EXPECT_LE(rel_l2(got[i], want[i]), test::tol_for(compute)) << "item " << i << " run " << run;
      }
    }
  }
}

}  // namespace
}  // namespace zimage::cuda
