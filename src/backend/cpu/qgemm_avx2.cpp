// The integer GEMM tile (qgemm_kernels.h) with AVX2 (the `avx2` level, signed activations): no
// VNNI, so vpmaddubsw on |q_w| (unsigned) and q_x with q_w's sign (signed): the pair sums stay
// within int16 (2 * 128 * 127 = 32512), then vpmaddwd by ones gives the int32 sum of each lane's 4.
#include <cstdint>

#include "backend/cpu/qgemm_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include <immintrin.h>

namespace zimage::cpu::avx2 {
namespace {

// Rows [m0, m0 + MR) against the 16 lanes of panel p (two ymm of 8 lanes). NIB: 4-bit panels
// (unsigned values 0..15, two groups a byte): vpmaddubsw takes them as they are, the pair sums stay
// within 2 * 15 * 127; OFF: the weights are stored as q + t.off (idot takes off * xs).
template <int MR, int G, bool ASYM, bool NIB, bool OFF>
void half(const QTile& t, int m0, int j) {
  constexpr int NG = G / 4;
  constexpr int64_t QB = NIB ? G * 8 : G * 16;
  const QPanel& p = t.p[j];
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i lo4 = _mm256_set1_epi8(0x0F);
  __m256 acc[MR][2];
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < t.nb; ++b) {
    __m256i ia[MR][2];
    for (int m = 0; m < MR; ++m)
      ia[m][0] = ia[m][1] =
          OFF ? _mm256_set1_epi32(-t.off * int32_t(t.xs[(m0 + m) * t.ldxd + b])) : _mm256_setzero_si256();
    const int8_t* wq = p.q + b * QB;
    // unsigned weights u (NIB) or signed ones with s = sign: maddubs(|w|, sign(x, w))
    auto group = [&](__m256i u0, __m256i u1, __m256i s0, __m256i s1, bool sgn, int g) {
      for (int m = 0; m < MR; ++m) {
        int32_t xv;
        __builtin_memcpy(&xv, t.x + (m0 + m) * t.ldx + b * G + g * 4, 4);
        const __m256i xb = _mm256_set1_epi32(xv);
        const __m256i p0 = _mm256_maddubs_epi16(u0, sgn ? _mm256_sign_epi8(xb, s0) : xb);
        const __m256i p1 = _mm256_maddubs_epi16(u1, sgn ? _mm256_sign_epi8(xb, s1) : xb);
        ia[m][0] = _mm256_add_epi32(ia[m][0], _mm256_madd_epi16(p0, ones));
        ia[m][1] = _mm256_add_epi32(ia[m][1], _mm256_madd_epi16(p1, ones));
      }
    };
    if (NIB) {
      for (int g = 0; g < NG / 2; ++g) {
        const __m256i r0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + g * 64));
        const __m256i r1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + g * 64 + 32));
        group(_mm256_and_si256(r0, lo4), _mm256_and_si256(r1, lo4), r0, r1, false, g);
        group(_mm256_and_si256(_mm256_srli_epi16(r0, 4), lo4), _mm256_and_si256(_mm256_srli_epi16(r1, 4), lo4), r0, r1,
              false, g + NG / 2);
      }
    } else {
      for (int g = 0; g < NG; ++g) {
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + g * 64));
        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + g * 64 + 32));
        group(_mm256_abs_epi8(w0), _mm256_abs_epi8(w1), w0, w1, true, g);
      }
    }
    __m256 s[2], mn[2];
    for (int h = 0; h < 2; ++h) {
      s[h] = _mm256_loadu_ps(p.s + b * 16 + h * 8);
      if (ASYM) mn[h] = _mm256_loadu_ps(p.mn + b * 16 + h * 8);
    }
    for (int m = 0; m < MR; ++m) {
      const __m256 d = _mm256_set1_ps(t.xd[(m0 + m) * t.ldxd + b]);
      __m256 xs;
      if (ASYM) xs = _mm256_set1_ps(t.xs[(m0 + m) * t.ldxd + b]);
      for (int h = 0; h < 2; ++h) {
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(ia[m][h]), s[h]);
        if (ASYM) v = _mm256_fmadd_ps(mn[h], xs, v);
        acc[m][h] = _mm256_fmadd_ps(v, d, acc[m][h]);
      }
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int h = 0; h < 2; ++h) _mm256_storeu_ps(t.out + (m0 + m) * 32 + j * 16 + h * 8, acc[m][h]);
}

template <int G, bool ASYM, bool NIB = false, bool OFF = false>
void run(const QTile& t) {
  for (int j = 0; j < t.np; ++j) {
    int m = 0;
    for (; m + 2 <= t.mr; m += 2) half<2, G, ASYM, NIB, OFF>(t, m, j);
    if (m < t.mr) half<1, G, ASYM, NIB, OFF>(t, m, j);
  }
}

}  // namespace

void qgemm_tile(const QTile& t) {
  const bool asym = t.p[0].mn != nullptr;
  if (t.nib)  // Q4_K (offsets, no shift) or Q4_0 (q + 8)
    asym ? run<32, true, true, false>(t) : run<32, false, true, true>(t);
  else if (t.G == 32)
    asym ? run<32, true>(t) : run<32, false>(t);
  else
    asym ? run<16, true>(t) : run<16, false>(t);
}

}  // namespace zimage::cpu::avx2

#pragma GCC pop_options
