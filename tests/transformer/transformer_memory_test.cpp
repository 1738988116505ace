// Working memory of attention and of the whole denoiser grows linearly with the token count: the
// S x S score matrix is never materialised (peak RSS measured through /proc/self/status VmHWM,
// reset with /proc/self/clear_refs).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "ops/ops.h"
#include "transformer/transformer_z_image.h"
#include "util/test_util.h"

namespace zimage {
namespace {

int64_t vm_hwm_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

// Resets the peak RSS to the current RSS; false where the kernel does not allow it.
bool reset_peak() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return bool(f);
}

TEST(TransformerMemory, AttentionAt16kTokensStaysLinear) {
  const int64_t S = 16384, H = 1, D = 32;  // a 256x256 latent = 128x128 patches
  Tensor q = test::randn({1, S, H, D}, 1), k = test::randn({1, S, H, D}, 2), v = test::randn({1, S, H, D}, 3);
  Tensor out = Tensor::empty(DType::F32, {1, S, H, D});
  if (!reset_peak()) GTEST_SKIP() << "/proc/self/clear_refs is not writable";
  const int64_t before = vm_hwm_bytes();
  ASSERT_GT(before, 0);
  const auto t0 = std::chrono::steady_clock::now();
  out = ops::attention(q, k, v, 1.f / std::sqrt(float(D)), false);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t grown = vm_hwm_bytes() - before;
  const int64_t scores = S * S * 4;  // what a materialised score matrix would take (1 GiB)
  std::printf("  attention S=%lld: peak RSS grew %.1f MiB (S*S*4 = %.0f MiB), %.2f s\n", (long long)S,
              double(grown) / (1 << 20), double(scores) / (1 << 20), secs);
  EXPECT_LT(grown, 32ll << 20);  // the output (2 MiB) plus per-thread blocks
  // The result is a real softmax average: check a few rows against a direct double computation.
  for (int64_t i : {int64_t(0), int64_t(4097), S - 1}) {
    std::vector<double> s(static_cast<size_t>(S));
    double mx = -1e300, sum = 0;
    for (int64_t j = 0; j < S; ++j) {
      double acc = 0;
      for (int64_t d = 0; d < D; ++d) acc += double(q.f32()[i * D + d]) * k.f32()[j * D + d];
      s[size_t(j)] = acc / std::sqrt(double(D));
      mx = std::max(mx, s[size_t(j)]);
    }
    for (auto& x : s) sum += (x = std::exp(x - mx));
    for (int64_t d = 0; d < D; ++d) {
      double acc = 0;
      for (int64_t j = 0; j < S; ++j) acc += s[size_t(j)] * v.f32()[j * D + d];
      EXPECT_NEAR(out.f32()[i * D + d], acc / sum, 1e-4) << "row " << i << " dim " << d;
    }
  }
}

TEST(TransformerMemory, WholeModelPeakGrowsLinearly) {
  auto m = ZImageTransformer2DModel::load(test::fixture("models/tiny-bf16/transformer"), DType::BF16);
  const auto& c = m.config();
  auto run = [&](int64_t hw) {
    Tensor x = test::randn({c.in_channels, 1, hw, hw}, 4);
    Tensor cap = test::randn({20, c.cap_feat_dim}, 5);
    reset_peak();
    const int64_t before = vm_hwm_bytes();
    auto out = m.forward({x}, {0.5f}, {cap});
    EXPECT_EQ(out[0].shape(), x.shape());
    return vm_hwm_bytes() - before;
  };
  if (!reset_peak()) GTEST_SKIP() << "/proc/self/clear_refs is not writable";
  run(16);                                   // warm-up: primitive caches, thread pools
  const int64_t S1 = 32 * 32, S2 = 64 * 64;  // image tokens of 64x64 and 128x128 latents
  const int64_t g1 = run(64), g2 = run(128);
  const int64_t scores2 = S2 * S2 * 4 * c.n_heads;  // one layer's materialised scores at S2
  std::printf("  tiny model: peak RSS grew %.1f MiB at %lld tokens, %.1f MiB at %lld tokens (S*S*4*heads = %.0f MiB)\n",
              double(g1) / (1 << 20), (long long)S1, double(g2) / (1 << 20), (long long)S2,
              double(scores2) / (1 << 20));
  EXPECT_LT(g2, scores2 / 4);
  // 4x the tokens: a quadratic term would grow 16x; allow 4x plus a fixed 4 MiB of slack.
  EXPECT_LT(g2, 4 * g1 + (4ll << 20));
}

}  // namespace
}  // namespace zimage
