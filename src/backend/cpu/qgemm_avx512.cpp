// The integer GEMM tile (qgemm_kernels.h) with AVX-512 VNNI: vpdpbusd multiplies unsigned by
// signed bytes, so the activations come as q + 128 (uint8) and each block's integer accumulator
// starts at the panel's -128 * sum(q_w), which leaves exactly sum(q_x * q_w). One zmm holds a
// group of 4 values of 16 weight rows; a broadcast of 4 activation bytes meets all 16 at once.
#include <cstdint>

#include "backend/cpu/qgemm_kernels.h"

#pragma GCC push_options
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma")
#include <immintrin.h>

namespace zimage::cpu::avx512 {
namespace {

template <int MR, int NP, int G, bool ASYM>
void tile(const QTile& t) {
  constexpr int NG = G / 4;
  __m512 acc[MR][NP];
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NP; ++j) acc[m][j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < t.nb; ++b) {
    __m512i ia[MR][NP];
    for (int j = 0; j < NP; ++j) {
      const __m512i neg = _mm512_loadu_si512(t.p[j].neg + b * 16);
      for (int m = 0; m < MR; ++m) ia[m][j] = neg;
    }
    const int8_t* w0 = t.p[0].q + b * G * 16;
    const int8_t* w1 = t.p[NP - 1].q + b * G * 16;
    for (int g = 0; g < NG; ++g) {
      __m512i w[NP];
      w[0] = _mm512_loadu_si512(w0 + g * 64);
      if (NP > 1) w[NP - 1] = _mm512_loadu_si512(w1 + g * 64);
      for (int m = 0; m < MR; ++m) {
        int32_t xv;
        __builtin_memcpy(&xv, t.x + m * t.ldx + b * G + g * 4, 4);
        const __m512i xb = _mm512_set1_epi32(xv);
        for (int j = 0; j < NP; ++j) ia[m][j] = _mm512_dpbusd_epi32(ia[m][j], xb, w[j]);
      }
    }
    __m512 s[NP], mn[NP];
    for (int j = 0; j < NP; ++j) {
      s[j] = _mm512_loadu_ps(t.p[j].s + b * 16);
      if (ASYM) mn[j] = _mm512_loadu_ps(t.p[j].mn + b * 16);
    }
    for (int m = 0; m < MR; ++m) {
      const __m512 d = _mm512_set1_ps(t.xd[m * t.ldxd + b]);
      __m512 xs;
      if (ASYM) xs = _mm512_set1_ps(t.xs[m * t.ldxd + b]);
      for (int j = 0; j < NP; ++j) {
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(ia[m][j]), s[j]);
        if (ASYM) v = _mm512_fmadd_ps(mn[j], xs, v);
        acc[m][j] = _mm512_fmadd_ps(v, d, acc[m][j]);
      }
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NP; ++j) _mm512_storeu_ps(t.out + m * 32 + j * 16, acc[m][j]);
}

template <int G, bool ASYM>
void by_shape(const QTile& t) {
  static constexpr QTileKernel k[4][2] = {
      {tile<1, 1, G, ASYM>, tile<1, 2, G, ASYM>},
      {tile<2, 1, G, ASYM>, tile<2, 2, G, ASYM>},
      {tile<3, 1, G, ASYM>, tile<3, 2, G, ASYM>},
      {tile<4, 1, G, ASYM>, tile<4, 2, G, ASYM>},
  };
  k[t.mr - 1][t.np - 1](t);
}

}  // namespace

void qgemm_tile(const QTile& t) {
  const bool asym = t.p[0].mn != nullptr;
  if (t.G == 32)
    asym ? by_shape<32, true>(t) : by_shape<32, false>(t);
  else
    asym ? by_shape<16, true>(t) : by_shape<16, false>(t);
}

}  // namespace zimage::cpu::avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options
