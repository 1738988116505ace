#include "random/box_muller.h"

#include <bit>
#include <cmath>
#include <cstdint>

namespace zimage::random {

// Every multiply-add below is written either as an explicit std::fma (where torch's binary has
// a fused instruction) or as a product whose only consumer is not an addition, so the
// compiler's own FMA contraction cannot change a single rounding.

namespace {

inline uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }
inline float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

// Cephes single-precision constants (the values avx_mathfun uses).
constexpr float kMinNormPos = 1.17549435e-38f;  // smallest normal float, 0x00800000
constexpr uint32_t kInvMantMask = 0x807fffffu;  // ~0x7f800000
constexpr float kSqrtHalf = 0.707106781186547524f;
constexpr float kLogP0 = 7.0376836292E-2f;
constexpr float kLogP1 = -1.1514610310E-1f;
constexpr float kLogP2 = 1.1676998740E-1f;
constexpr float kLogP3 = -1.2420140846E-1f;
constexpr float kLogP4 = 1.4249322787E-1f;
constexpr float kLogP5 = -1.6668057665E-1f;
constexpr float kLogP6 = 2.0000714765E-1f;
constexpr float kLogP7 = -2.4999993993E-1f;
constexpr float kLogP8 = 3.3333331174E-1f;
constexpr float kLogQ1 = -2.12194440e-4f;
constexpr float kLogQ2 = 0.693359375f;

constexpr float kFourOverPi = 1.27323954473516f;
constexpr float kMinusDP1 = -0.78515625f;
constexpr float kMinusDP2 = -2.4187564849853515625e-4f;
constexpr float kMinusDP3 = -3.77489497744594108e-8f;
constexpr float kSinP0 = -1.9515295891E-4f;
constexpr float kSinP1 = 8.3321608736E-3f;
constexpr float kSinP2 = -1.6666654611E-1f;
constexpr float kCosP0 = 2.443315711809948E-005f;
constexpr float kCosP1 = -1.388731625493765E-003f;
constexpr float kCosP2 = 4.166664568298827E-002f;

// _mm256_cvttps_epi32: truncation, out-of-range and NaN give INT32_MIN.
inline int32_t cvtt(float f) {
  if (!(f > -2147483904.0f && f < 2147483648.0f)) return INT32_MIN;
  return int32_t(f);
}

}  // namespace

float cephes_logf(float x) {
  const uint32_t invalid = (x <= 0.0f) ? 0xffffffffu : 0u;  // ordered compare: NaN -> 0
  x = (x > kMinNormPos) ? x : kMinNormPos;                  // vmaxps(x, min): a NaN x gives min, like maxps
  int32_t imm0 = int32_t(bits(x) >> 23);
  x = from_bits((bits(x) & kInvMantMask) | bits(0.5f));  // mantissa in [0.5, 1)
  imm0 -= 0x7f;
  float e = float(imm0);
  e = e + 1.0f;
  // if (x < sqrt(1/2)) { e -= 1; x = x + x - 1; } else { x = x - 1; }
  const bool below = x < kSqrtHalf;
  const float tmp = below ? x : 0.0f;
  x = x - 1.0f;
  e = e - (below ? 1.0f : 0.0f);
  x = x + tmp;
  const float z = x * x;
  float y = kLogP0;
  y = std::fma(y, x, kLogP1);
  y = std::fma(y, x, kLogP2);
  y = std::fma(y, x, kLogP3);
  y = std::fma(y, x, kLogP4);
  y = std::fma(y, x, kLogP5);
  y = std::fma(y, x, kLogP6);
  y = std::fma(y, x, kLogP7);
  y = std::fma(y, x, kLogP8);
  y = y * x;
  y = std::fma(y, z, e * kLogQ1);
  y = std::fma(-z, 0.5f, y);
  x = x + y;
  x = std::fma(e, kLogQ2, x);
  return from_bits(bits(x) | invalid);
}

void cephes_sincosf(float x, float* s, float* c) {
  uint32_t sign_sin = bits(x) & 0x80000000u;
  x = from_bits(bits(x) & 0x7fffffffu);  // |x|
  // j = (int(|x| * 4/pi) + 1) & ~1, y = float(j)
  int32_t j = cvtt(x * kFourOverPi);
  j = int32_t(uint32_t(j) + 1u) & ~1;
  const float y = float(j);
  const uint32_t swap_sign_sin = (uint32_t(j) & 4u) << 29;
  const bool sin_poly_first = (j & 2) == 0;  // select mask of the sine polynomial
  // Extended precision modular arithmetic: x = ((x - y*DP1) - y*DP2) - y*DP3.
  x = std::fma(y, kMinusDP1, x);
  x = std::fma(y, kMinusDP2, x);
  x = std::fma(y, kMinusDP3, x);
  const uint32_t sign_cos = (~(uint32_t(j) - 2u) & 4u) << 29;
  sign_sin ^= swap_sign_sin;

  const float z = x * x;
  // Cosine polynomial (0 <= x <= pi/4).
  float yc = std::fma(kCosP0, z, kCosP1);
  yc = std::fma(yc, z, kCosP2);
  yc = yc * z;
  yc = std::fma(yc, z, -(z * 0.5f));
  yc = yc + 1.0f;
  // Sine polynomial.
  float ys = std::fma(kSinP0, z, kSinP1);
  ys = std::fma(ys, z, kSinP2);
  ys = ys * z;
  ys = std::fma(ys, x, x);
  // Blend exactly as the vector code does (and/andnot, subtract, add).
  const float ysin2 = sin_poly_first ? ys : 0.0f;
  const float ysin1 = sin_poly_first ? 0.0f : yc;
  const float ys_rest = ys - ysin2;
  const float yc_rest = yc - ysin1;
  const float sin_v = ysin1 + ysin2;
  const float cos_v = yc_rest + ys_rest;
  *s = from_bits(bits(sin_v) ^ sign_sin);
  *c = from_bits(bits(cos_v) ^ sign_cos);
}

void normal_fill_16(float* data, float mean, float std) {
  // _mm256_set1_ps(2.0f * c10::pi<double>): the product is taken in double, then rounded.
  const float two_pi = float(2.0f * 3.14159265358979323846);
  for (int j = 0; j < 8; ++j) {
    const float u1 = 1.0f - data[j];
    const float u2 = data[j + 8];
    const float radius = std::sqrt(-2.0f * cephes_logf(u1));
    const float theta = two_pi * u2;
    float sin_t, cos_t;
    cephes_sincosf(theta, &sin_t, &cos_t);
    const float n1 = radius * cos_t;
    const float n2 = radius * sin_t;
    data[j] = std::fma(n1, std, mean);
    data[j + 8] = std::fma(n2, std, mean);
  }
}

}  // namespace zimage::random
