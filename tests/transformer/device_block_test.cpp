// The transformer block's model code on device tensors: ZImageTransformerBlock (f32 and bf16,
// with and without adaLN modulation, one and two items) loaded with its weights on Device::CUDA
// and run on device inputs reaches its data only through ops and copies: on the host-memory fake
// device (tests/util/fake_device.h) every host access to a device tensor would be an Error, and
// the forwarding table runs the same CPU ops, so the result must equal the CPU block's bit for bit.
// The same for the whole ZImageTransformer2DModel::forward loaded onto the device (its inputs and
// results stay on the CPU). This is the GPU-free half of tests/cuda/block_test.cpp (which runs
// the real CUDA table).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "transformer/config.h"
#include "transformer/transformer_block.h"
#include "transformer/transformer_z_image.h"
#include "transformer/weights.h"
#include "util/fake_device_ops.h"
#include "util/test_util.h"

namespace zimage {
namespace {

struct Case {
  const char* model;   // tiny-fp32 / tiny-bf16
  const char* prefix;  // layers.0. / context_refiner.0.
  bool modulation;
  std::vector<int64_t> rows;
};

class DeviceBlock : public ::testing::TestWithParam<Case> {};

TEST_P(DeviceBlock, RunsThroughOpsOnlyAndMatchesCpuBitForBit) {
  const Case c = GetParam();
  const std::string dir = test::fixture(std::string("models/") + c.model + "/transformer");
  const auto cfg = ZImageTransformerConfig::load(dir + "/config.json");
  const WeightStore store = WeightStore::open_dir(dir);
  const DType compute = std::string(c.model) == "tiny-bf16" ? DType::BF16 : DType::F32;
  int64_t T = 0;
  for (int64_t n : c.rows) T += n;
  const int64_t B = int64_t(c.rows.size()), hd = cfg.head_dim();
  const Tensor x = test::randn({T, cfg.dim}, 1);
  const Tensor adaln = test::randn({B, cfg.adaln_dim()}, 2);
  const Tensor ang = test::randn({T, hd / 2}, 3);
  Tensor rope = Tensor::empty(DType::F32, {T, hd / 2, 2});
  for (int64_t i = 0; i < T * hd / 2; ++i) {
    rope.f32()[2 * i] = std::cos(ang.f32()[i]);
    rope.f32()[2 * i + 1] = std::sin(ang.f32()[i]);
  }

  const transformer::WeightLoader loader(store, compute, "transformer");
  const transformer::ZImageTransformerBlock cpu(loader, c.prefix, cfg, c.modulation);
  transformer::BlockBuffers cpu_buf;
  const ops::Precision p = ops::Precision::of(compute, "test");
  const Tensor want = cpu.forward(p, x.clone(), c.rows, rope, c.modulation ? adaln : Tensor(), cpu_buf);

  const ops::OpTable table = test::ForwardingOps::table();
  test::FakeDevice fake(&table);
  transformer::WeightLoader dev_loader(store, compute, "transformer");
  dev_loader.set_device(Device::CUDA);
  const transformer::ZImageTransformerBlock dev(dev_loader, c.prefix, cfg, c.modulation);
  transformer::BlockBuffers dev_buf;
  const int calls = test::ForwardingOps::calls();
  const Tensor got = dev.forward(p, x.to(Device::CUDA), c.rows, rope.to(Device::CUDA),
                                 c.modulation ? adaln.to(Device::CUDA) : Tensor(), dev_buf);
  EXPECT_GT(test::ForwardingOps::calls(), calls + 5);
  ASSERT_EQ(got.device(), Device::CUDA);
  const Tensor host = got.to(Device::CPU);
  ASSERT_EQ(host.shape(), want.shape());
  EXPECT_EQ(std::memcmp(host.raw(), want.raw(), want.nbytes()), 0) << "rel L2 " << rel_l2(host, want);
  // The buffers follow the device: a later CPU forward with the same buffers still works.
  const Tensor again = dev.forward(p, x.to(Device::CUDA), c.rows, rope.to(Device::CUDA),
                                   c.modulation ? adaln.to(Device::CUDA) : Tensor(), dev_buf);
  EXPECT_EQ(std::memcmp(again.to(Device::CPU).raw(), want.raw(), want.nbytes()), 0);
  const Tensor cpu_again = cpu.forward(p, x.clone(), c.rows, rope, c.modulation ? adaln : Tensor(), dev_buf);
  EXPECT_EQ(std::memcmp(cpu_again.raw(), want.raw(), want.nbytes()), 0);
}

INSTANTIATE_TEST_SUITE_P(
    TinyFixtures, DeviceBlock,
    ::testing::Values(Case{"tiny-fp32", "layers.0.", true, {40}}, Case{"tiny-fp32", "layers.1.", true, {24, 40}},
                      Case{"tiny-fp32", "context_refiner.0.", false, {20, 12}},
                      Case{"tiny-bf16", "layers.0.", true, {40}}, Case{"tiny-bf16", "layers.1.", true, {24, 40}},
                      Case{"tiny-bf16", "context_refiner.0.", false, {20, 12}}),
    [](const auto& info) {
      return std::string(std::string(info.param.model) == "tiny-bf16" ? "BF16_" : "F32_") + std::to_string(info.index);
    });

TEST(DeviceTransformer, WholeForwardRunsThroughOpsAndMatchesCpuBitForBit) {
  for (const char* model : {"tiny-fp32", "tiny-bf16"}) {
    SCOPED_TRACE(model);
    const std::string dir = test::fixture(std::string("models/") + model + "/transformer");
    const DType compute = std::string(model) == "tiny-bf16" ? DType::BF16 : DType::F32;
    const ZImageTransformer2DModel cpu = ZImageTransformer2DModel::load(dir, compute);
    const int64_t C = cpu.config().in_channels, F = cpu.config().cap_feat_dim;
    const std::vector<Tensor> x{test::randn({C, 1, 8, 8}, 11), test::randn({C, 1, 6, 4}, 12)};
    const std::vector<Tensor> cap{test::randn({7, F}, 13), test::randn({12, F}, 14)};
    const std::vector<float> t{0.3f, 0.7f};
    const std::vector<Tensor> want = cpu.forward(x, t, cap);

    const ops::OpTable table = test::ForwardingOps::table();
    test::FakeDevice fake(&table);
    const ZImageTransformer2DModel dev = ZImageTransformer2DModel::load(dir, compute, "", {}, Device::CUDA);
    EXPECT_EQ(dev.device(), Device::CUDA);
    for (int run = 0; run < 2; ++run) {  // the second run reuses the cached caption path
      const int calls = test::ForwardingOps::calls();
      const std::vector<Tensor> got = dev.forward(x, t, cap);
      EXPECT_GT(test::ForwardingOps::calls(), calls + 20);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].device(), Device::CPU);
        ASSERT_EQ(got[i].shape(), want[i].shape());
        EXPECT_EQ(std::memcmp(got[i].raw(), want[i].raw(), want[i].nbytes()), 0)
            << "item " << i << " run " << run << " rel L2 " << rel_l2(got[i], want[i]);
      }
    }
  }
}

}  // namespace
}  // namespace zimage
