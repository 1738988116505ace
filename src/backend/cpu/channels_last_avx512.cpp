// Channels-last group norm rows and the bf16 residual add on AVX-512 (the `avx512` and `amx`
// levels' cl_* and add_bf16 entries, cpu_level.h): 16 channels make one vector, masked for a tail.
// The same arithmetic as the plain loops (plain_kernels.inc) except that SiLU's exp is a
// polynomial (~1 ulp) instead of std::exp.
#include <algorithm>
#include <cstdint>

#include "backend/cpu/level_kernels.h"

#if !defined(__clang__)  // GCC only: clang takes the ISA from CMakeLists.txt
#pragma GCC push_options
#pragma GCC diagnostic push
// GCC 12 flags the deliberately undefined operands inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")
#endif
#include <immintrin.h>

namespace zimage::cpu::avx512 {
namespace {

constexpr int64_t L = 16;  // lanes of one vector
using V = __m512;

inline V load(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline V load(const uint16_t* p, __mmask16 m) {
  const __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}
// Round to nearest even bf16 bits (NaN -> 0x7fc0), exactly as f32_to_bf16.
inline __m512i bf16_bits(V v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  return _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7fc0));
}
inline V round_bf16_v(V v) { return _mm512_castsi512_ps(_mm512_slli_epi32(bf16_bits(v), 16)); }
inline void store(float* p, V v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
inline void store(uint16_t* p, V v, __mmask16 m) {
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(bf16_bits(v)));
}
// exp(x): x = n ln2 + r, |r| <= ln2 / 2, Cephes' degree-6 polynomial for e^r, times 2^n.
inline V exp_v(V x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.f), _mm512_max_ps(_mm512_set1_ps(-104.f), x));  // NaN passes through
  const V n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  V r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  V p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}
inline __mmask16 lane_mask(int64_t c, int64_t C) {
  const int64_t n = std::min<int64_t>(L, C - c);
  return n >= L ? __mmask16(0xffff) : __mmask16((1u << n) - 1u);
}

template <class T>
void cl_sums(const T* x, int64_t C, const float* shift, int64_t p0, int64_t p1, double* s1, double* s2) {
  for (int64_t q = p0; q < p1; q += 64) {  // float partial sums over 64 pixels, then double
    const int64_t e = std::min(p1, q + 64);
    for (int64_t c = 0; c < C; c += L) {
      const __mmask16 m = lane_mask(c, C);
      const V sh = load(shift + c, m);
      V f1 = _mm512_setzero_ps(), f2 = _mm512_setzero_ps();
      for (int64_t p = q; p < e; ++p) {
        const V d = _mm512_sub_ps(load(x + p * C + c, m), sh);
        f1 = _mm512_add_ps(f1, d);
        f2 = _mm512_fmadd_ps(d, d, f2);
      }
      alignas(64) float a1[L], a2[L];
      _mm512_store_ps(a1, f1);
      _mm512_store_ps(a2, f2);
      for (int64_t l = 0; l < std::min<int64_t>(L, C - c); ++l) s1[c + l] += a1[l], s2[c + l] += a2[l];
    }
  }
}

template <class T>
void cl_apply(const T* x, T* y, int64_t C, const float* a, const float* sh, int64_t p0, int64_t p1, bool silu) {
  constexpr bool bf16 = sizeof(T) == 2;
  const V one = _mm512_set1_ps(1.f);
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t c = 0; c < C; c += L) {
      const __mmask16 m = lane_mask(c, C);
      V v = _mm512_fmadd_ps(load(x + p * C + c, m), load(a + c, m), load(sh + c, m));
      if (silu) {
        if (bf16) v = round_bf16_v(v);
        v = _mm512_div_ps(v, _mm512_add_ps(one, exp_v(_mm512_sub_ps(_mm512_setzero_ps(), v))));
      }
      store(y + p * C + c, v, m);
    }
}

}  // namespace

void cl_sums_f32(const float* x, int64_t C, const float* shift, int64_t p0, int64_t p1, double* s1, double* s2) {
  cl_sums(x, C, shift, p0, p1, s1, s2);
}
void cl_sums_bf16(const uint16_t* x, int64_t C, const float* shift, int64_t p0, int64_t p1, double* s1, double* s2) {
  cl_sums(x, C, shift, p0, p1, s1, s2);
}
void cl_apply_f32(const float* x, float* y, int64_t C, const float* a, const float* sh, int64_t p0, int64_t p1,
                  bool silu) {
  cl_apply(x, y, C, a, sh, p0, p1, silu);
}
void cl_apply_bf16(const uint16_t* x, uint16_t* y, int64_t C, const float* a, const float* sh, int64_t p0, int64_t p1,
                   bool silu) {
  cl_apply(x, y, C, a, sh, p0, p1, silu);
}
void add_bf16(uint16_t* y, const uint16_t* x, int64_t n) {
  for (int64_t i = 0; i < n; i += L) {
    const __mmask16 m = lane_mask(i, n);
    store(y + i, _mm512_add_ps(load(y + i, m), load(x + i, m)), m);
  }
}

}  // namespace zimage::cpu::avx512

#if !defined(__clang__)
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
