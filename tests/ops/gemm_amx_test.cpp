// The AMX bf16 GEMM (backend/cpu/gemm_amx.cpp) against a double-precision reference of the same
// bf16 inputs: M tails (rows past a 16/32-row tile), several M and K blocks, strided x and y,
// bias, f32 and bf16 outputs, and shapes it must decline (N or K not a multiple of 32).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/gemm.h"
#include "core/dtype.h"

using namespace zimage;

namespace {

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed, float scale) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = f32_to_bf16(d(g));
  return v;
}

struct Case {
  int64_t M, N, K, ldx_pad, ldy_pad;
  bool bias;
  DType yt;
};

}  // namespace

TEST(GemmAmx, MatchesReference) {
  if (!cpu::amx_available()) GTEST_SKIP() << "no AMX on this CPU (or ZIMAGE_GEMM=onednn)";
  const Case cases[] = {
      {1, 32, 32, 0, 0, false, DType::F32},     {17, 64, 64, 3, 5, true, DType::F32},
      {33, 96, 288, 0, 0, true, DType::BF16},   {100, 256, 544, 8, 0, false, DType::BF16},
      {1056, 320, 512, 0, 0, true, DType::F32}, {1700, 64, 96, 0, 7, true, DType::BF16},
  };
  for (const Case& c : cases) {
    const int64_t ldx = c.K + c.ldx_pad, ldy = c.N + c.ldy_pad;
    auto x = random_bf16(size_t(c.M * ldx), 1, 1.f), w = random_bf16(size_t(c.N * c.K), 2, 0.05f);
    std::vector<float> bias(size_t(c.N));
    for (int64_t n = 0; n < c.N; ++n) bias[size_t(n)] = 0.01f * float(n % 7) - 0.03f;
    std::vector<float> yf(size_t(c.M * ldy), -7.f);
    std::vector<uint16_t> yb(size_t(c.M * ldy), 0x1234);
    void* y = c.yt == DType::F32 ? static_cast<void*>(yf.data()) : static_cast<void*>(yb.data());
    ASSERT_TRUE(
        cpu::gemm_amx_bf16(c.M, c.N, c.K, x.data(), ldx, w.data(), c.bias ? bias.data() : nullptr, y, ldy, c.yt));
    double max_err = 0;
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < ldy; ++n) {
        if (n >= c.N) {  // padding columns untouched
          if (c.yt == DType::F32)
            EXPECT_EQ(yf[size_t(m * ldy + n)], -7.f);
          else
            EXPECT_EQ(yb[size_t(m * ldy + n)], 0x1234);
          continue;
        }
        double ref = c.bias ? bias[size_t(n)] : 0.0, mag = std::fabs(ref);
        for (int64_t k = 0; k < c.K; ++k) {
          const double p = double(bf16_to_f32(x[size_t(m * ldx + k)])) * double(bf16_to_f32(w[size_t(n * c.K + k)]));
          ref += p;
          mag += std::fabs(p);
        }
        const double got = c.yt == DType::F32 ? yf[size_t(m * ldy + n)] : bf16_to_f32(yb[size_t(m * ldy + n)]);
        // f32 accumulation: a few float eps of the sum of |terms|; bf16 output: plus half an ulp
        // of the result (2^-9 relative).
        const double acc_tol = 1e-6 * mag;
        const double tol = c.yt == DType::F32 ? acc_tol : std::fabs(ref) * 0.0040 + acc_tol;
        max_err = std::max(max_err, std::fabs(got - ref) / (std::fabs(ref) + 1e-2));
        ASSERT_LE(std::fabs(got - ref), tol)
            << "M " << c.M << " N " << c.N << " K " << c.K << " at (" << m << ", " << n << ")";
      }
    std::printf("AMX GEMM %lldx%lldx%lld (%s out%s): max rel err %.2g\n", (long long)c.M, (long long)c.N,
                (long long)c.K, dtype_name(c.yt), c.bias ? ", bias" : "", max_err);
  }
}

TEST(GemmAmx, DeclinesShapesItDoesNotTile) {
  std::vector<uint16_t> x(64 * 64), w(64 * 64);
  std::vector<float> y(64 * 64);
  EXPECT_FALSE(cpu::gemm_amx_bf16(4, 48, 64, x.data(), 64, w.data(), nullptr, y.data(), 48, DType::F32));  // N % 32
  EXPECT_FALSE(cpu::gemm_amx_bf16(4, 64, 40, x.data(), 40, w.data(), nullptr, y.data(), 64, DType::F32));  // K % 32
}
