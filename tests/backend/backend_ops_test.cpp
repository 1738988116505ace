// test_backend_ops (after llama.cpp's test-backend-ops): every op at every CPU kernel level this
// CPU offers (cpu::supported_levels(), switched in-process with cpu::ScopedLevel) against the plain
// double-precision references of ops::ref. ctest also runs this binary once per level with
// ZIMAGE_CPU set (backend_ops_level_*), so oneDNN's ISA is capped at that level as well.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "backend/cpu/cpu_level.h"
#include "backend/cpu/kernels.h"
#include "ops/channels_last.h"
#include "ops/ops.h"

namespace zimage {
namespace {

using cpu::Level;

Tensor randt(Shape s, uint32_t seed, float sd = 1.f, bool bf16 = false) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, sd);
  Tensor t = Tensor::empty(DType::F32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = bf16 ? round_bf16(nd(g)) : nd(g);
  return t;
}
Tensor bf16_values(const Tensor& x) {  // f32 tensor of x's values rounded to bf16
  Tensor y = x.to(DType::F32).clone();
  ops::round_to_bf16_(y);
  return y;
}
double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto av = a.to_vector(), bv = b.to_vector();
  EXPECT_EQ(av.size(), bv.size());
  double m = 0;
  for (size_t i = 0; i < std::min(av.size(), bv.size()); ++i) m = std::max(m, double(std::fabs(av[i] - bv[i])));
  return m;
}
// Largest distance in bf16 steps (of the larger magnitude) between a and b.
double max_bf16_steps(const Tensor& a, const Tensor& b) {
  const auto av = a.to_vector(), bv = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    const double mag = std::max(std::fabs(av[i]), std::fabs(bv[i]));
    if (mag == 0) continue;
    const double step = std::ldexp(1.0, std::ilogb(mag) - 7);
    m = std::max(m, std::fabs(double(av[i]) - bv[i]) / step);
  }
  return m;
}

class BackendOps : public ::testing::TestWithParam<Level> {
 protected:
  void SetUp() override {
    // Under a forced ZIMAGE_CPU the level must exist here; otherwise the whole run is skipped.
    try {
      cpu::active_level();
    } catch (const Error& e) {
      GTEST_SKIP() << e.what();
    }
    level_.emplace(GetParam());
  }
  std::optional<cpu::ScopedLevel> level_;
};

std::vector<Level> levels() { return cpu::supported_levels(); }

TEST_P(BackendOps, TableIsTheLevels) {
  EXPECT_EQ(cpu::kernels().level, GetParam());
  const char* g = std::getenv("ZIMAGE_GEMM");
  const bool onednn = g && std::strcmp(g, "onednn") == 0;
  EXPECT_EQ(cpu::kernels().gemm_amx, GetParam() == Level::Amx && !onednn);
  EXPECT_EQ(cpu::kernels().gemm_f32 != nullptr, GetParam() <= Level::Avx2 && !onednn);
}

TEST_P(BackendOps, LinearF32AndBf16) {
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{7, 64, 96}, {33, 96, 64}, {5, 40, 24}}) {
    Tensor x = randt({M, K}, 1), w = randt({N, K}, 2, 0.2f), b = randt({N}, 3);
    EXPECT_LT(rel_l2(ops::linear(x, w, &b), ops::ref::linear(x, w, &b)), 1e-6) << M << "x" << N << "x" << K;
    // bf16 weights: x rounded to bf16, products exact in f32, f32 accumulation.
    Tensor wb = w.to(DType::BF16);
    EXPECT_LT(rel_l2(ops::linear(x, wb, &b), ops::ref::linear(bf16_values(x), wb, &b)), 1e-5)
        << M << "x" << N << "x" << K;
  }
}

// A row's result never depends on the other rows: a batch of images or prompts changes M, and an
// image of a batch must be the image generated alone (CliRegenerate). Row i of linear(x[M]) is
// linear(x[i:i+1]) bit for bit, for f32 and bf16 weights (f32 and bf16 results), at the tiny and
// the full Z-Image width. oneDNN 2.6's avx2 f32 gemm:jit failed this (sums that depend on M).
TEST_P(BackendOps, LinearRowsDoNotDependOnM) {
  // oneDNN's ISA is capped once per process at ZIMAGE_CPU's level: a higher table switched in here
  // would run oneDNN's lower-ISA GEMM, a mix that no run uses (backend_ops_level_* runs it alone).
  if (GetParam() > cpu::active_level())
    GTEST_SKIP() << "oneDNN is capped at " << cpu::level_name(cpu::active_level()) << " in this process";
  for (auto [N, K] : {std::pair<int64_t, int64_t>{40, 24}, {96, 64}, {3840, 3840}}) {
    const Tensor w = randt({N, K}, 41, 0.02f), b = randt({N}, 42);
    for (int64_t M : {1, 7, 64, 300}) {
      const Tensor x = randt({M, K}, 40 + uint32_t(M));
      for (DType wt : {DType::F32, DType::BF16}) {
        const Tensor wp = ops::prepare_weight(w, wt);
        const Tensor y = ops::linear(x, wp, &b);
        Tensor yb;
        if (wt == DType::BF16) {
          yb = Tensor::empty(DType::BF16, {M, N});
          ops::linear_into(x.to(DType::BF16), wp, &b, yb);
        }
        std::vector<int64_t> rows;
        if (N * K <= 96 * 64) {
          for (int64_t i = 0; i < M; ++i) rows.push_back(i);
        } else {
          rows = {0, M / 2, M - 1};
        }
        for (int64_t i : rows) {
          const Tensor xi = x.slice0(i, i + 1);
          const Tensor yi = ops::linear(xi, wp, &b);
          ASSERT_EQ(std::memcmp(yi.raw(), static_cast<const float*>(y.raw()) + i * N, size_t(N) * 4), 0)
              << dtype_name(wt) << " weights, row " << i << " of M=" << M << ", N=" << N << ", K=" << K << ": max diff "
              << max_abs_diff(yi, y.slice0(i, i + 1).reshape({1, N}));
          if (wt == DType::BF16) {
            Tensor yib = Tensor::empty(DType::BF16, {1, N});
            ops::linear_into(xi.to(DType::BF16), wp, &b, yib);
            ASSERT_EQ(std::memcmp(yib.raw(), static_cast<const uint16_t*>(yb.raw()) + i * N, size_t(N) * 2), 0)
                << "bf16 results, row " << i << " of M=" << M << ", N=" << N << ", K=" << K;
          }
        }
      }
    }
  }
}

struct AttnCase {
  int64_t B, Sq, Sk, Hq, Hkv, D;
  bool causal;
  std::vector<int64_t> valid;
};
const std::vector<AttnCase> kAttn = {
    {1, 70, 600, 4, 2, 64, false, {}},        // two bf16 key blocks, grouped-query heads
    {2, 50, 130, 2, 1, 40, true, {130, 77}},  // causal, padding mask, head-dim tail
    {1, 40, 20, 2, 2, 16, true, {}},          // causal with Sq > Sk: the first rows see no key
};

TEST_P(BackendOps, AttentionF32) {
  for (const AttnCase& c : kAttn) {
    Tensor q = randt({c.B, c.Sq, c.Hq, c.D}, 4), k = randt({c.B, c.Sk, c.Hkv, c.D}, 5),
           v = randt({c.B, c.Sk, c.Hkv, c.D}, 6);
    const float scale = 1.f / std::sqrt(float(c.D));
    Tensor y = ops::attention(q, k, v, scale, c.causal, c.valid),
           r = ops::ref::attention(q, k, v, scale, c.causal, c.valid);
    EXPECT_LT(rel_l2(y, r), 1e-6) << c.Sq << "x" << c.Sk;
    EXPECT_LT(max_abs_diff(y, r), 1e-5) << c.Sq << "x" << c.Sk;
  }
}

TEST_P(BackendOps, AttentionBf16) {
  for (const AttnCase& c : kAttn) {
    Tensor q = randt({c.B, c.Sq, c.Hq, c.D}, 7, 1.f, true), k = randt({c.B, c.Sk, c.Hkv, c.D}, 8, 1.f, true),
           v = randt({c.B, c.Sk, c.Hkv, c.D}, 9, 1.f, true);
    const float scale = 1.f / std::sqrt(float(c.D));
    Tensor y = ops::attention_torch_bf16(q, k, v, scale, c.causal, c.valid);
    // torch's bf16 semantics (probabilities and output rounded to bf16): close to the exact
    // attention at bf16 precision, every output a bf16 value.
    EXPECT_LT(rel_l2(y, ops::ref::attention(q, k, v, scale, c.causal, c.valid)), 1e-2) << c.Sq << "x" << c.Sk;
    EXPECT_EQ(rel_l2(y, bf16_values(y)), 0.0);
  }
}

TEST_P(BackendOps, Norms) {
  Tensor x = randt({6, 3, 40}, 10, 2.f), w = randt({40}, 11), b = randt({40}, 12);
  EXPECT_LT(rel_l2(ops::rms_norm(x, w, 1e-6f), ops::ref::rms_norm(x, w, 1e-6f)), 1e-6);
  EXPECT_LT(rel_l2(ops::rms_norm(x, Tensor(), 1e-6f), ops::ref::rms_norm(x, Tensor(), 1e-6f)), 1e-6);
  EXPECT_LT(rel_l2(ops::layer_norm(x, w, b, 1e-5f), ops::ref::layer_norm(x, w, b, 1e-5f)), 1e-6);
  EXPECT_LT(rel_l2(ops::layer_norm(x, Tensor(), Tensor(), 1e-5f), ops::ref::layer_norm(x, Tensor(), Tensor(), 1e-5f)),
            1e-6);
}

TEST_P(BackendOps, RoPE) {
  Tensor x = randt({2, 5, 3, 16}, 13), c = randt({5, 16}, 14), s = randt({5, 16}, 15);
  Tensor y = x.clone();
  ops::rope_rotate_half_(y, c, s);
  EXPECT_LT(rel_l2(y, ops::ref::rope_rotate_half(x, c, s)), 1e-6);
  Tensor xi = randt({7, 3, 16}, 16), cs = randt({7, 8, 2}, 17);
  Tensor yi = xi.clone();
  ops::rope_interleaved_(yi, cs);
  EXPECT_LT(rel_l2(yi, ops::ref::rope_interleaved(xi, cs)), 1e-6);
}

TEST_P(BackendOps, SwiGLU) {
  Tensor a = randt({9, 200}, 18, 3.f), b = randt({9, 200}, 19);
  EXPECT_LT(rel_l2(ops::silu_mul(a, b), ops::ref::silu_mul(a, b)), 1e-6);
  // The bf16 pass (the table's exp): bf16(bf16(silu(bf16 a)) * bf16 b), within one bf16 step of
  // the exact value rounded the same way.
  Tensor out = Tensor::empty(DType::BF16, a.shape());
  ops::silu_mul_bf16(a, b, out);
  Tensor want = bf16_values(ops::ref::silu_mul(bf16_values(a), bf16_values(b)));
  EXPECT_LE(max_bf16_steps(out.to(DType::F32), want), 1.0);
  EXPECT_LT(rel_l2(out.to(DType::F32), want), 1e-2);
}

TEST_P(BackendOps, Exp) {
  std::vector<float> x;
  for (float t = -100.f; t < 88.f; t += 0.0371f) x.push_back(t);
  std::vector<float> y(x.size());
  cpu::exp_f32(x.data(), y.data(), int64_t(x.size()));
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(double(x[i]));
    const double ulp = std::max(std::ldexp(1.0, std::ilogb(want) - 23), std::ldexp(1.0, -149));
    worst = std::max(worst, std::fabs(y[i] - want) / ulp);
  }
  EXPECT_LE(worst, 2.0);
}

TEST_P(BackendOps, Modulation) {
  const std::vector<int64_t> rows = {3, 5};
  Tensor x = randt({8, 24}, 20), sc = randt({2, 24}, 21), g = randt({2, 24}, 22), y = randt({8, 24}, 23);
  EXPECT_LT(rel_l2(ops::modulate(x, sc, rows, DType::F32), ops::ref::modulate(x, sc, rows)), 1e-6);
  Tensor xa = x.clone();
  ops::gate_add_(xa, g, y, rows, DType::F32);
  EXPECT_LT(rel_l2(xa, ops::ref::gate_add(x, g, y, rows)), 1e-6);
  Tensor xb = x.clone();
  ops::gate_add_(xb, Tensor(), y, rows, DType::F32);
  EXPECT_LT(rel_l2(xb, ops::ref::gate_add(x, Tensor(), y, rows)), 1e-6);
}

// The fused bf16 row ops (their element loops are the level's row kernels, row_kernels.inc) equal
// the plain composition of the separate ops bit for bit, with and without the affine weight,
// scale and gate, at lengths that leave vector tails.
TEST_P(BackendOps, FusedBf16RowsEqualPlainComposition) {
  const std::vector<int64_t> rows = {3, 5};
  const float eps = 1e-6f;
  auto bits_equal = [](const Tensor& a, const Tensor& b) {
    const auto av = a.to(DType::F32).to_vector(), bv = b.to(DType::F32).to_vector();
    if (av.size() != bv.size()) return false;
    return std::memcmp(av.data(), bv.data(), av.size() * sizeof(float)) == 0;
  };
  for (int64_t N : {37, 200}) {
    SCOPED_TRACE("N = " + std::to_string(N));
    Tensor x = randt({8, N}, 40, 2.f), y = randt({8, N}, 41, 3.f);
    Tensor w = randt({N}, 42, 0.5f, true), sc = randt({2, N}, 43), g = randt({2, N}, 44);
    for (bool has_w : {false, true})
      for (bool has_s : {false, true}) {
        SCOPED_TRACE(std::string("weight ") + (has_w ? "yes" : "no") + ", scale/gate " + (has_s ? "yes" : "no"));
        const Tensor wt = has_w ? w : Tensor(), st = has_s ? sc : Tensor(), gt = has_s ? g : Tensor();
        Tensor fused = Tensor::empty(DType::BF16, x.shape());
        ops::rms_norm_modulate_bf16(x, wt, st, rows, eps, fused);
        Tensor plain = ops::rms_norm_as(x, wt, eps, DType::BF16);
        if (has_s) plain = ops::modulate(plain, st, rows, DType::BF16);
        EXPECT_TRUE(bits_equal(fused, plain)) << "rms_norm_modulate_bf16";
        Tensor xf = bf16_values(x), xp = bf16_values(x);  // the residual stream holds bf16 values
        ops::rms_norm_gate_add_bf16_(xf, gt, y, wt, rows, eps);
        ops::gate_add_(xp, gt, ops::rms_norm_as(bf16_values(y), wt, eps, DType::BF16), rows, DType::BF16);
        EXPECT_TRUE(bits_equal(xf, xp)) << "rms_norm_gate_add_bf16_";
      }
    Tensor a = randt({8, N}, 45, 3.f), b = randt({8, N}, 46);
    Tensor fused = Tensor::empty(DType::BF16, a.shape());
    ops::silu_mul_bf16(a, b, fused);
    EXPECT_TRUE(bits_equal(fused, ops::silu_mul_as(bf16_values(a), bf16_values(b), DType::BF16))) << "silu_mul_bf16";
  }
}

struct ConvCase {
  Shape x, w;
  int64_t stride;
  ops::Padding2d pad;
};
const std::vector<ConvCase> kConv = {
    {{1, 16, 8, 12}, {32, 16, 3, 3}, 1, ops::Padding2d::same(1)},
    {{2, 3, 9, 7}, {5, 3, 3, 3}, 1, ops::Padding2d::same(1)},
    {{1, 16, 16, 10}, {16, 16, 3, 3}, 2, {0, 1, 0, 1}},  // Downsample2D
    {{1, 32, 5, 6}, {16, 32, 1, 1}, 1, {}},              // conv_shortcut
};

TEST_P(BackendOps, Conv) {
  for (const ConvCase& c : kConv) {
    Tensor x = randt(c.x, 24), w = randt(c.w, 25, 0.2f), b = randt({c.w[0]}, 26);
    const Tensor r = ops::ref::conv2d(x, w, &b, c.stride, c.pad);
    EXPECT_LT(rel_l2(ops::conv2d(x, w, &b, c.stride, c.pad), r), 1e-6) << shape_str(c.x);
    ops::ChannelsLastConv2d cl;
    cl.init(w, b, c.stride, c.pad);
    const Tensor y = cl.forward(ops::to_channels_last(x, DType::F32));
    EXPECT_LT(rel_l2(ops::from_channels_last(y), r), 1e-6) << shape_str(c.x);
    // The residual add (a resnet's conv2): y0 + conv(x) exactly as the separate conv and add
    // compute it, not the products summed onto y0 (oneDNN's jit:avx2 sum post-op did).
    Tensor acc = ops::to_channels_last(randt(r.shape(), 33, 4.f), DType::F32);
    Tensor want = acc.clone();
    ops::add_(want, y);
    cl.forward_accumulate(ops::to_channels_last(x, DType::F32), acc);
    EXPECT_EQ(max_abs_diff(acc, want), 0.0) << shape_str(c.x);
    // bf16: inputs and weights rounded to bf16, f32 accumulation, the result rounded once.
    Tensor wb = w.to(DType::BF16);
    ops::ChannelsLastConv2d clb;
    clb.init(wb, b, c.stride, c.pad);
    Tensor yb = ops::from_channels_last(clb.forward(ops::to_channels_last(x, DType::BF16)));
    EXPECT_LE(max_bf16_steps(yb, bf16_values(ops::ref::conv2d(bf16_values(x), wb, &b, c.stride, c.pad))), 1.0)
        << shape_str(c.x);
  }
}

// The CPU backend's two memory layouts of the oneDNN convolution (cpu::ConvLayout, its own choice:
// ops::conv2d takes the default), f32 and bf16 weights (x rounded to bf16, f32 accumulation).
cpu::ConvShape conv_shape(const ConvCase& c) {
  return {c.x[0],   c.x[1],   c.x[2],    c.x[3],       c.w[0],     c.w[2],     c.w[3],
          c.stride, c.stride, c.pad.top, c.pad.bottom, c.pad.left, c.pad.right};
}
TEST_P(BackendOps, ConvBothLayouts) {
  for (const ConvCase& c : kConv) {
    const Tensor x = randt(c.x, 27), w = randt(c.w, 28, 0.2f), b = randt({c.w[0]}, 29);
    const Tensor r = ops::ref::conv2d(x, w, &b, c.stride, c.pad);
    const Tensor wb = w.to(DType::BF16);
    const Tensor rb = ops::ref::conv2d(bf16_values(x), wb, &b, c.stride, c.pad);
    const cpu::ConvShape s = conv_shape(c);
    for (cpu::ConvLayout layout : {cpu::ConvLayout::Plain, cpu::ConvLayout::Blocked}) {
      Tensor y = Tensor::empty(DType::F32, r.shape());
      cpu::conv2d(s, x.raw(), w.raw(), DType::F32, b.f32(), y.f32(), layout);
      EXPECT_LT(rel_l2(y, r), 1e-6) << shape_str(c.x) << " layout " << int(layout);
      cpu::conv2d(s, x.raw(), wb.raw(), DType::BF16, b.f32(), y.f32(), layout);
      EXPECT_LT(rel_l2(y, rb), 1e-5) << shape_str(c.x) << " bf16, layout " << int(layout);
    }
  }
}

TEST_P(BackendOps, GroupNorm) {
  for (int64_t C : {32, 40}) {  // 40: a channel tail of the 16-wide vectors
    Tensor x = randt({2, C, 7, 9}, 27, 2.f), w = randt({C}, 28), b = randt({C}, 29);
    for (bool silu : {false, true}) {
      const Tensor r = ops::ref::group_norm(x, 8, w, b, 1e-6f, silu);
      EXPECT_LT(rel_l2(ops::group_norm(x, 8, w, b, 1e-6f, silu), r), 2e-6) << C << " silu " << silu;
      Tensor ycl = ops::from_channels_last(
          ops::group_norm_channels_last(ops::to_channels_last(x, DType::F32), 8, w, b, 1e-6f, silu));
      EXPECT_LT(rel_l2(ycl, r), 2e-6) << C << " silu " << silu;
      // bf16 activations: the statistics of the bf16 values, results rounded to bf16.
      Tensor yb = ops::from_channels_last(
          ops::group_norm_channels_last(ops::to_channels_last(x, DType::BF16), 8, w, b, 1e-6f, silu));
      EXPECT_LT(rel_l2(yb, ops::ref::group_norm(bf16_values(x), 8, w, b, 1e-6f, silu)), 1e-2) << C << " silu " << silu;
      EXPECT_EQ(rel_l2(yb, bf16_values(yb)), 0.0);
    }
  }
}

TEST_P(BackendOps, UpsampleAndAdd) {
  Tensor x = randt({2, 24, 5, 3}, 30);
  const Tensor r = ops::ref::upsample_nearest2x(x);
  EXPECT_EQ(max_abs_diff(ops::upsample_nearest2x(x), r), 0.0);
  EXPECT_EQ(
      max_abs_diff(ops::from_channels_last(ops::upsample_nearest2x_channels_last(ops::to_channels_last(x, DType::F32))),
                   r),
      0.0);
  // bf16 residual add (the table's add_bf16): bf16(a + b), exactly; 2 x 1500 elements cross the
  // 1024-element blocks and the vector tails.
  Tensor a = ops::to_channels_last(randt({2, 25, 6, 10}, 31), DType::BF16),
         b = ops::to_channels_last(randt({2, 25, 6, 10}, 32), DType::BF16);
  Tensor want = Tensor::empty(DType::F32, a.shape());
  const auto av = a.to_vector(), bv = b.to_vector();
  for (size_t i = 0; i < av.size(); ++i) want.f32()[i] = round_bf16(av[i] + bv[i]);
  ops::add_as_(a, b);
  EXPECT_EQ(max_abs_diff(a, want), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Levels, BackendOps, ::testing::ValuesIn(levels()),
                         [](const auto& info) { return std::string(cpu::level_name(info.param)); });

// Benchmark (test_backend_ops --gtest_also_run_disabled_tests --gtest_filter='*ConvBench*'): a 3x3
// conv 128 -> 128 channels on a 512x512 image, fp32 and bf16, both of the backend's layouts (the
// active level's oneDNN ISA).
TEST(ConvBench, DISABLED_Conv512x512x128) {
  const int64_t C = 128, H = 512, W = 512;
  Tensor x = randt({1, C, H, W}, 1), w = randt({C, C, 3, 3}, 2, 0.05f), b = randt({C}, 3);
  const double flop = 2.0 * C * C * 9 * H * W;
  for (DType dt : {DType::F32, DType::BF16}) {
    Tensor wp = ops::prepare_conv_weight(w, dt);
    const cpu::ConvShape s{1, C, H, W, C, 3, 3, 1, 1, 1, 1, 1, 1};
    Tensor y = Tensor::empty(DType::F32, {1, C, H, W});
    for (cpu::ConvLayout layout : {cpu::ConvLayout::Plain, cpu::ConvLayout::Blocked}) {
      cpu::conv2d(s, x.raw(), wp.raw(), dt, b.f32(), y.f32(), layout);  // warm-up (primitive creation)
      double best = 1e30;
      for (int it = 0; it < 3; ++it) {
        auto t0 = std::chrono::steady_clock::now();
        cpu::conv2d(s, x.raw(), wp.raw(), dt, b.f32(), y.f32(), layout);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::printf("conv 512x512x128 3x3 %s %s: %.1f ms, %.1f GFLOP/s (%d threads)\n", dtype_name(dt),
                  layout == cpu::ConvLayout::Plain ? "nchw" : "blocked", best * 1e3, flop / best / 1e9,
                  ops::num_threads());
    }
  }
}

TEST(CpuLevel, EnvValueChoosesOrRefuses) {
  const std::vector<Level> sup = cpu::supported_levels();
  ASSERT_FALSE(sup.empty());
  if (const char* e = std::getenv("ZIMAGE_CPU"); e && *e) {
    for (Level l : sup) {
      if (std::strcmp(e, cpu::level_name(l)) == 0) {
        EXPECT_EQ(cpu::active_level(), l);
      }
    }
  }
  EXPECT_EQ(sup.front(), Level::Portable);
  EXPECT_EQ(cpu::level_from_env_value(nullptr), sup.back());
  EXPECT_EQ(cpu::level_from_env_value(""), sup.back());
  for (Level l : sup) EXPECT_EQ(cpu::level_from_env_value(cpu::level_name(l)), l);
  try {
    cpu::level_from_env_value("avx9");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[cpu] ZIMAGE_CPU must be one of amx, avx512, avx2, portable (got \"avx9\")");
  }
  for (Level l : {Level::Avx2, Level::Avx512, Level::Amx}) {
    if (!cpu::missing_feature(l)) continue;
    try {
      cpu::level_from_env_value(cpu::level_name(l));
      FAIL() << "no error for " << cpu::level_name(l);
    } catch (const Error& e) {
      const std::string want =
          std::string("[cpu] ZIMAGE_CPU=") + cpu::level_name(l) + ": this CPU lacks " + cpu::missing_feature(l);
      EXPECT_EQ(std::string(e.what()).rfind(want, 0), 0u) << e.what();
    }
  }
}

}  // namespace
}  // namespace zimage
