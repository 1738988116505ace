// Channels-last (NHWC) ops of the decoder's fast path (ops/channels_last.h) against the NCHW ops
// they replace (ops::conv2d / group_norm / upsample_nearest2x, themselves tested in conv_test.cpp),
// and the channels-last decoder against the NCHW decoder on the fixture models.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "core/safetensors.h"
#include "ops/channels_last.h"
#include "util/test_util.h"
#include "vae/autoencoder_kl.h"
#include "vae/decoder.h"

using namespace zimage;

namespace {
Tensor randt(Shape s, uint32_t seed, float scale = 1.f, float mean = 0.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(mean, scale);
  Tensor t = Tensor::empty(DType::F32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = n(g);
  return t;
}
Tensor bf16_rounded(const Tensor& x) {
  Tensor y = x.clone();
  ops::round_to_bf16_(y);
  return y;
}
// Largest |a - b| in units of b's bf16 spacing (ulp of a bf16 value of b's magnitude).
double max_bf16_ulps(const Tensor& a, const Tensor& b) {
  auto av = a.to_vector(), bv = b.to_vector();
  double worst = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    const double ulp = std::max(std::ldexp(1.0, std::ilogb(std::fabs(bv[i]) + 1e-30f) - 7), 1e-30);
    worst = std::max(worst, std::fabs(double(av[i]) - bv[i]) / ulp);
  }
  return worst;
}
}  // namespace

TEST(ChannelsLast, RoundTripAndBf16Rounding) {
  Tensor x = randt({2, 24, 5, 7}, 1);
  Tensor cl = ops::to_channels_last(x, DType::F32);
  ASSERT_EQ(cl.shape(), (Shape{2, 5, 7, 24}));
  EXPECT_EQ(cl.f32()[((1 * 5 + 3) * 7 + 4) * 24 + 17], x.f32()[((1 * 24 + 17) * 5 + 3) * 7 + 4]);
  EXPECT_EQ(ops::from_channels_last(cl).to_vector(), x.to_vector());
  Tensor b = ops::to_channels_last(x, DType::BF16);
  EXPECT_EQ(b.dtype(), DType::BF16);
  EXPECT_EQ(ops::from_channels_last(b).to_vector(), bf16_rounded(x).to_vector());
}

TEST(ChannelsLast, ConvMatchesNchwConv) {
  struct Case {
    Shape x, w;
    int64_t stride;
    ops::Padding2d pad;
  };
  const Case cases[] = {
      {{1, 16, 8, 12}, {32, 16, 3, 3}, 1, ops::Padding2d::same(1)},
      {{2, 64, 21, 19}, {48, 64, 3, 3}, 1, ops::Padding2d::same(1)},  // batch 2, odd sizes
      {{2, 8, 9, 7}, {24, 8, 3, 3}, 1, ops::Padding2d::same(1)},      // channels not a multiple of 16
      {{1, 32, 5, 6}, {16, 32, 1, 1}, 1, {}},                         // conv_shortcut
      {{1, 16, 16, 24}, {16, 16, 3, 3}, 2, {0, 1, 0, 1}},             // Downsample2D
  };
  for (const auto& c : cases) {
    Tensor x = randt(c.x, 2), w = randt(c.w, 3, 0.2f), b = randt({c.w[0]}, 4);
    for (DType dt : {DType::F32, DType::BF16}) {
      Tensor wp = ops::prepare_conv_weight(w, dt);
      ops::ChannelsLastConv2d conv;
      conv.init(wp, b, c.stride, c.pad);
      Tensor ref = ops::conv2d(dt == DType::BF16 ? bf16_rounded(x) : x, wp, &b, c.stride, c.pad);  // f32 result
      Tensor y = ops::from_channels_last(conv.forward(ops::to_channels_last(x, dt)));
      ASSERT_EQ(y.shape(), ref.shape());
      if (dt == DType::F32) {
        EXPECT_LE(rel_l2(y, ref), 1e-6) << shape_str(c.x) << " " << shape_str(c.w);
        // Accumulate: y0 + conv(x) through the sum post-op.
        Tensor y0cl = ops::to_channels_last(randt(ref.shape(), 5), DType::F32);
        Tensor y0 = ops::from_channels_last(y0cl);
        conv.forward_accumulate(ops::to_channels_last(x, dt), y0cl);
        Tensor want = ref.clone();
        ops::add_(want, y0);
        EXPECT_LE(rel_l2(ops::from_channels_last(y0cl), want), 1e-6);
      } else {
        // bf16 result: the f32 result rounded once (up to a last-bit difference from summation order).
        EXPECT_LE(max_bf16_ulps(y, bf16_rounded(ref)), 1.0) << shape_str(c.x) << " " << shape_str(c.w);
      }
      // NCHW float32 output (conv_out), any channel count.
      Tensor yn = conv.forward_nchw(ops::to_channels_last(x, dt));
      if (dt == DType::F32)
        EXPECT_LE(rel_l2(yn, ref), 1e-6);
      else
        EXPECT_LE(max_bf16_ulps(yn, bf16_rounded(ref)), 1.0);
    }
  }
  ops::ChannelsLastConv2d conv;
  conv.init(randt({8, 16, 3, 3}, 6), randt({8}, 7), 1, ops::Padding2d::same(1));
  EXPECT_THROW(conv.forward(ops::to_channels_last(randt({1, 8, 4, 4}, 8), DType::F32)), Error);    // channels
  EXPECT_THROW(conv.forward(ops::to_channels_last(randt({1, 16, 4, 4}, 8), DType::BF16)), Error);  // dtype
}

TEST(ChannelsLast, GroupNormMatchesNchwGroupNorm) {
  struct Case {
    int64_t B, C, H, W, G;
    float mean;
  };
  // Channel tails (24, 40 channels), one channel per group, and a large mean (variance accuracy).
  const Case cases[] = {
      {2, 24, 5, 7, 8, 0.f}, {1, 40, 9, 11, 5, 0.f}, {1, 16, 33, 35, 16, 0.f}, {1, 32, 12, 12, 8, 500.f}};
  for (const auto& c : cases) {
    Tensor x = randt({c.B, c.C, c.H, c.W}, 11, 2.f, c.mean), w = randt({c.C}, 12), b = randt({c.C}, 13);
    for (bool silu : {false, true}) {
      Tensor ref = ops::group_norm(x, c.G, w, b, 1e-6f, silu);
      Tensor y = ops::from_channels_last(
          ops::group_norm_channels_last(ops::to_channels_last(x, DType::F32), c.G, w, b, 1e-6f, silu));
      EXPECT_LE(rel_l2(y, ref), 2e-6) << c.C << " silu " << silu;
      // bf16: the NCHW op in bf16 storage on the same bf16 input; in place gives the same.
      Tensor xb = bf16_rounded(x), wb = bf16_rounded(w), bb = bf16_rounded(b);
      Tensor refb = ops::group_norm(xb, c.G, wb, bb, 1e-6f, silu, DType::BF16);
      Tensor cl = ops::to_channels_last(xb, DType::BF16);
      Tensor yb = ops::from_channels_last(ops::group_norm_channels_last(cl, c.G, wb, bb, 1e-6f, silu));
      EXPECT_LE(max_bf16_ulps(yb, refb), 1.0) << c.C << " silu " << silu;
      ops::group_norm_channels_last_into(cl, c.G, wb, bb, 1e-6f, silu, cl);
      EXPECT_EQ(ops::from_channels_last(cl).to_vector(), yb.to_vector());
    }
  }
  Tensor x = ops::to_channels_last(randt({1, 12, 3, 3}, 14), DType::F32);
  try {
    ops::group_norm_channels_last(x, 5, randt({12}, 1), randt({12}, 2), 1e-6f, false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("12 channels are not divisible by 5 groups"), std::string::npos) << e.what();
  }
}

TEST(ChannelsLast, UpsampleAndAdd) {
  Tensor x = randt({2, 20, 3, 5}, 21);
  for (DType dt : {DType::F32, DType::BF16}) {
    Tensor up = ops::from_channels_last(ops::upsample_nearest2x_channels_last(ops::to_channels_last(x, dt)));
    Tensor want = ops::upsample_nearest2x(dt == DType::BF16 ? bf16_rounded(x) : x);
    EXPECT_EQ(up.to_vector(), want.to_vector());
  }
  // bf16 add: each sum rounded to bf16 (nearest even), including a tail past a multiple of 16.
  Tensor a = bf16_rounded(randt({1, 3, 7, 5}, 22)), b = bf16_rounded(randt({1, 3, 7, 5}, 23, 1e-2f));
  Tensor ya = a.to(DType::BF16), yb = b.to(DType::BF16);
  ops::add_as_(ya, yb);
  std::vector<float> got = ya.to_vector();
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(got[size_t(i)], round_bf16(a.f32()[i] + b.f32()[i])) << i;
  Tensor fa = a.clone();
  ops::add_as_(fa, b);
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(fa.f32()[i], a.f32()[i] + b.f32()[i]);
}

TEST(ChannelsLast, DecoderMatchesNchwDecoder) {
  for (std::string m : {"tiny-fp32", "tiny-bf16"}) {
    const std::string dir = test::fixture("models/" + m + "/vae");
    const auto cfg = AutoencoderKLConfig::load(dir + "/config.json");
    WeightStore ws = WeightStore::open_dir(dir);
    for (DType dt : {DType::F32, DType::BF16}) {
      vae::Decoder dec;
      dec.load(vae::Loader(ws, dt, "vae"), cfg, "decoder");
      Tensor z = bf16_rounded(randt({2, cfg.latent_channels, 6, 5}, 31));
      const ops::Precision p = ops::Precision::of(dt, "vae");
      Tensor a = dec.forward_nhwc(z, p), b = dec.forward_plain(z, p);
      ASSERT_EQ(a.shape(), b.shape());
      const double e = rel_l2(a, b);
      std::printf("%s %s decoder channels-last vs NCHW: rel L2 %.3g\n", m.c_str(), dtype_name(dt), e);
      // f32: the same arithmetic up to summation order; bf16: both emulate a bf16 run, a few
      // roundings flip where the f32 sums differ in their last bit.
      EXPECT_LE(e, dt == DType::F32 ? 1e-6 : 1e-2);
    }
  }
}

// Benchmark (run with --gtest_also_run_disabled_tests --gtest_filter='*Bench*'): one resnet
// step at 512x512x128 (group norm + SiLU, conv, residual) channels-last vs NCHW.
TEST(ChannelsLastBench, DISABLED_GroupNormConv512x512x128) {
  const int64_t C = 128, H = 512, W = 512;
  Tensor x = randt({1, C, H, W}, 1), w = randt({C, C, 3, 3}, 2, 0.05f), b = randt({C}, 3), g = randt({C}, 4);
  for (DType dt : {DType::F32, DType::BF16}) {
    Tensor wp = ops::prepare_conv_weight(w, dt);
    ops::ChannelsLastConv2d conv;
    conv.init(wp, b, 1, ops::Padding2d::same(1));
    Tensor xc = ops::to_channels_last(x, dt), h = Tensor::empty(dt, xc.shape()), y = Tensor::empty(dt, xc.shape());
    auto clock = [] { return std::chrono::steady_clock::now(); };
    auto secs = [](auto t0, auto t1) { return std::chrono::duration<double>(t1 - t0).count(); };
    double gn = 1e30, cv = 1e30, nchw = 1e30;
    for (int it = 0; it < 3; ++it) {
      auto t0 = clock();
      ops::group_norm_channels_last_into(xc, 32, g, b, 1e-6f, true, h);
      auto t1 = clock();
      conv.forward_into(h, y);
      auto t2 = clock();
      Tensor r = ops::conv2d(ops::group_norm(x, 32, g, b, 1e-6f, true, dt), wp, &b, 1, ops::Padding2d::same(1));
      auto t3 = clock();
      gn = std::min(gn, secs(t0, t1)), cv = std::min(cv, secs(t1, t2)), nchw = std::min(nchw, secs(t2, t3));
    }
    std::printf(
        "%s 512x512x128: channels-last group norm+silu %.1f ms, conv %.1f ms (%.0f GFLOP/s); NCHW ops %.1f ms\n",
        dtype_name(dt), gn * 1e3, cv * 1e3, 2.0 * C * C * 9 * H * W / cv / 1e9, nchw * 1e3);
  }
}
