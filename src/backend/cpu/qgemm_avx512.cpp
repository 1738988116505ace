// The integer GEMM tile (qgemm_kernels.h) with AVX-512 VNNI: vpdpbusd multiplies unsigned by
// signed bytes, so the activations come as q + 128 (uint8) and each block's integer accumulator
// starts at the panel's -128 * sum(q_w), which leaves exactly sum(q_x * q_w). One zmm holds a
// group of 4 values of 16 weight rows; a broadcast of 4 activation bytes meets all 16 at once.
// 4-bit panels are split into their two groups with a shift and two masks per 64 bytes.
#include <cstdint>

#include "backend/cpu/qgemm_kernels.h"

#pragma GCC push_options
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma")
#include <immintrin.h>

namespace zimage::cpu::avx512 {
namespace {

// NIB: the panel holds 4-bit values two to a byte (group g in the low nibbles, group g + G / 8 in
// the high ones, qgemm_kernels.h); OFF: the weights are stored as q + t.off (idot takes off * xs).
template <int MR, int NP, int G, bool ASYM, bool NIB, bool OFF>
void tile(const QTile& t) {
  constexpr int NG = G / 4;
  constexpr int64_t QB = NIB ? G * 8 : G * 16;  // panel bytes per block
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  __m512 acc[MR][NP];
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NP; ++j) acc[m][j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < t.nb; ++b) {
    __m512i ia[MR][NP];
    for (int j = 0; j < NP; ++j) {
      const __m512i neg = _mm512_loadu_si512(t.p[j].neg + b * 16);
      for (int m = 0; m < MR; ++m) ia[m][j] = neg;
    }
    if (OFF)
      for (int m = 0; m < MR; ++m) {
        const __m512i xc = _mm512_set1_epi32(-t.off * int32_t(t.xs[m * t.ldxd + b]));
        for (int j = 0; j < NP; ++j) ia[m][j] = _mm512_add_epi32(ia[m][j], xc);
      }
    const int8_t* w0 = t.p[0].q + b * QB;
    const int8_t* w1 = t.p[NP - 1].q + b * QB;
    const int8_t* xr = t.x + b * G;
    auto group = [&](const __m512i* w, int g) {
      for (int m = 0; m < MR; ++m) {
        int32_t xv;
        __builtin_memcpy(&xv, xr + m * t.ldx + g * 4, 4);
        const __m512i xb = _mm512_set1_epi32(xv);
        for (int j = 0; j < NP; ++j) ia[m][j] = _mm512_dpbusd_epi32(ia[m][j], xb, w[j]);
      }
    };
    if (NIB) {
      for (int g = 0; g < NG / 2; ++g) {
        __m512i raw[NP], w[NP];
        raw[0] = _mm512_loadu_si512(w0 + g * 64);
        if (NP > 1) raw[NP - 1] = _mm512_loadu_si512(w1 + g * 64);
        for (int j = 0; j < NP; ++j) w[j] = _mm512_and_si512(raw[j], lo4);
        group(w, g);
        for (int j = 0; j < NP; ++j) w[j] = _mm512_and_si512(_mm512_srli_epi16(raw[j], 4), lo4);
        group(w, g + NG / 2);
      }
    } else {
      for (int g = 0; g < NG; ++g) {
        __m512i w[NP];
        w[0] = _mm512_loadu_si512(w0 + g * 64);
        if (NP > 1) w[NP - 1] = _mm512_loadu_si512(w1 + g * 64);
        group(w, g);
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

template <int G, bool ASYM, bool NIB = false, bool OFF = false>
void by_shape(const QTile& t) {
  static constexpr QTileKernel k[4][2] = {
      {tile<1, 1, G, ASYM, NIB, OFF>, tile<1, 2, G, ASYM, NIB, OFF>},
      {tile<2, 1, G, ASYM, NIB, OFF>, tile<2, 2, G, ASYM, NIB, OFF>},
      {tile<3, 1, G, ASYM, NIB, OFF>, tile<3, 2, G, ASYM, NIB, OFF>},
      {tile<4, 1, G, ASYM, NIB, OFF>, tile<4, 2, G, ASYM, NIB, OFF>},
  };
  k[t.mr - 1][t.np - 1](t);
}

}  // namespace

void qgemm_tile(const QTile& t) {
  const bool asym = t.p[0].mn != nullptr;
  if (t.nib)  // Q4_K (offsets, no shift) or Q4_0 (q + 8)
    asym ? by_shape<32, true, true, false>(t) : by_shape<32, false, true, true>(t);
  else if (t.G == 32)
    asym ? by_shape<32, true>(t) : by_shape<32, false>(t);
  else
    asym ? by_shape<16, true>(t) : by_shape<16, false>(t);
}

}  // namespace zimage::cpu::avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options
