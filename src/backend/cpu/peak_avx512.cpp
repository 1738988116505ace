// The instruction-peak loops of peak.h (AVX-512 VNNI and BF16).
#include "backend/cpu/peak.h"

#if !defined(__clang__)  // GCC only: clang takes the ISA from CMakeLists.txt
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vnni,avx512bf16")
#endif
#include <immintrin.h>

namespace zimage::cpu {

int64_t peak_loop_vpdpbusd(int64_t iters) {
  __m512i acc[kPeakAccumulators];
  for (int j = 0; j < kPeakAccumulators; ++j) acc[j] = _mm512_set1_epi32(j);
  __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(3);
  for (int64_t i = 0; i < iters; ++i) {
    asm volatile("" : "+v"(a), "+v"(b));
    for (int j = 0; j < kPeakAccumulators; ++j) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
  }
  __m512i s = acc[0];
  for (int j = 1; j < kPeakAccumulators; ++j) s = _mm512_add_epi32(s, acc[j]);
  alignas(64) int32_t v[16];
  _mm512_store_si512(v, s);
  return v[0] + v[15];
}

int64_t peak_loop_vdpbf16ps(int64_t iters) {
  __m512 acc[kPeakAccumulators];
  for (int j = 0; j < kPeakAccumulators; ++j) acc[j] = _mm512_set1_ps(float(j));
  __m512i a = _mm512_set1_epi16(0x3f80), b = _mm512_set1_epi16(0x3f80);
  for (int64_t i = 0; i < iters; ++i) {
    asm volatile("" : "+v"(a), "+v"(b));
    for (int j = 0; j < kPeakAccumulators; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], (__m512bh)a, (__m512bh)b);
  }
  __m512 s = acc[0];
  for (int j = 1; j < kPeakAccumulators; ++j) s = _mm512_add_ps(s, acc[j]);
  alignas(64) float v[16];
  _mm512_store_ps(v, s);
  return int64_t(v[0] + v[15]);
}

}  // namespace zimage::cpu

#if !defined(__clang__)
#pragma GCC pop_options
#endif
