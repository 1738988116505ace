// The precision policy at block level: the DiT block (and the whole transformer) run with the
// bf16 mode's fused passes gives the same bits as the plain composition of ops it replaces
// (Precision::torch_bf16(false)), with modulation (layers) and without (context refiner).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "core/safetensors.h"
#include "ops/ops.h"
#include "transformer/transformer_z_image.h"
#include "util/test_util.h"

namespace zimage {
namespace {

Tensor randn(Shape s, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n;
  Tensor t = Tensor::empty(DType::F32, std::move(s));
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = n(g) * scale;
  return t;
}

// Number of elements whose float bits differ.
int64_t bit_diffs(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.numel(), b.numel());
  const auto x = a.to_vector(), y = b.to_vector();
  int64_t d = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) d += std::memcmp(&x[i], &y[i], sizeof(float)) != 0;
  return d;
}

const std::string kDir = "models/tiny-bf16/transformer";

TEST(BlockPrecision, FusedBlockEqualsPlainComposition) {
  const std::string dir = test::fixture(kDir);
  const auto cfg = ZImageTransformerConfig::load(dir + "/config.json");
  const WeightStore store = ZImageTransformer2DModel::open_weights(dir, cfg);
  const transformer::WeightLoader w(store, DType::BF16, "transformer");
  const std::vector<int64_t> rows{37, 22};  // two items
  const int64_t T = 59, B = 2, hd = cfg.head_dim();
  for (const bool modulation : {true, false}) {
    const transformer::ZImageTransformerBlock block(w, modulation ? "layers.1." : "context_refiner.0.", cfg,
                                                    modulation);
    Tensor x = randn({T, cfg.dim}, 1, 2.f);
    ops::round_to_bf16_(x);  // a bf16 run's residual stream
    const Tensor cs = randn({T, hd / 2, 2}, 2, 0.7f), adaln = randn({B, cfg.adaln_dim()}, 3);
    transformer::BlockBuffers buf_fused, buf_plain;
    const Tensor fused =
        block.forward(ops::Precision::torch_bf16(true), x.clone(), rows, cs, modulation ? adaln : Tensor(), buf_fused);
    const Tensor plain =
        block.forward(ops::Precision::torch_bf16(false), x.clone(), rows, cs, modulation ? adaln : Tensor(), buf_plain);
    EXPECT_EQ(bit_diffs(fused, plain), 0) << "modulation " << modulation;
    EXPECT_GT(bit_diffs(fused, x), T * cfg.dim / 2) << "the block changed x";
    // Every value is one a bf16 tensor holds.
    int64_t not_bf16 = 0;
    for (float v : fused.to_vector()) not_bf16 += round_bf16(v) != v;
    EXPECT_EQ(not_bf16, 0);
  }
}

TEST(BlockPrecision, FusedModelEqualsPlainComposition) {
  auto m = ZImageTransformer2DModel::load(test::fixture(kDir), DType::BF16);
  EXPECT_TRUE(m.precision().bf16() && m.precision().fused);
  const int64_t C = m.config().in_channels, F = m.config().cap_feat_dim;
  const std::vector<Tensor> xs{randn({C, 1, 8, 6}, 4), randn({C, 1, 6, 8}, 5)};
  const std::vector<Tensor> caps{randn({7, F}, 6), randn({12, F}, 7)};
  const std::vector<float> t{0.25f, 0.8f};
  const auto fused = m.forward(xs, t, caps);
  m.set_precision(ops::Precision::torch_bf16(false));
  const auto plain = m.forward(xs, t, caps);
  ASSERT_EQ(fused.size(), plain.size());
  for (size_t i = 0; i < fused.size(); ++i) EXPECT_EQ(bit_diffs(fused[i], plain[i]), 0) << "item " << i;
  // A precision whose storage is not the compute dtype is refused.
  try {
    m.set_precision(ops::Precision::f32());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[transformer] a float32 precision does not fit a model loaded for "
                                         "bfloat16 compute"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace zimage
