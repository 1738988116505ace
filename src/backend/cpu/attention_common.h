// Pieces shared by the AVX-512 attention kernels (attention_f32_avx512.cpp,
// attention_bf16_avx512.cpp): work split, aligned scratch, and vector helpers. Include it only
// from files compiled for AVX-512 (they set `#pragma GCC target` before including it).
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>

namespace zimage::cpu::attn {

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Scratch memory aligned to 64 bytes (one zmm), zero-initialised.
template <class T>
struct Scratch {
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> p;
  explicit Scratch(int64_t n) {
    const size_t bytes = size_t(round_up(std::max<int64_t>(n, 1) * int64_t(sizeof(T)), 64));
    p.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
    if (!p) throw std::bad_alloc();
    std::fill_n(reinterpret_cast<char*>(p.get()), bytes, char(0));
  }
  T* get() const { return p.get(); }
};

// Work items are (batch, kv head, query chunk). A task packs the K/V of its kv head once and then
// serves every query head of the group over its query rows, so packing is amortised over
// group × chunk rows. Heads alone usually give enough tasks; otherwise queries are split too.
struct TaskSplit {
  int64_t chunks = 1, chunk_rows = 0;
  TaskSplit(int64_t B, int64_t Hkv, int64_t Sq, int64_t threads, int64_t row_align) {
    const int64_t base = std::max<int64_t>(B * Hkv, 1);
    const int64_t want = 4 * threads;
    if (base < want)
      chunks = std::min((want + base - 1) / base, std::max<int64_t>((Sq + row_align - 1) / row_align, 1));
    chunk_rows = round_up((Sq + chunks - 1) / chunks, row_align);
    chunks = std::max<int64_t>((Sq + chunk_rows - 1) / std::max<int64_t>(chunk_rows, 1), 1);
  }
  int64_t tasks(int64_t B, int64_t Hkv) const { return B * Hkv * chunks; }
};

// exp(x) on 16 floats: Cody-Waite reduction x = n·ln2 + r (|r| <= ln2/2), degree-7 Taylor
// polynomial (truncation error < 2^-27 relative), 2^n applied with scalef so gradual underflow
// and overflow to inf are exact. Within ~1 ulp of the true value; NaN propagates, -inf gives 0.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-110.f), x);  // operand order keeps a NaN x
  x = _mm512_min_ps(_mm512_set1_ps(100.f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 high part: n·hi is exact
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// Round-to-nearest-even to bf16, as zimage::f32_to_bf16 (NaN -> 0x7fc0): the f32 bit pattern
// with the low 16 bits cleared (denormals kept, unlike VCVTNEPS2BF16).
inline __m512i bf16_bits_hi(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  r = _mm512_and_si512(r, _mm512_set1_epi32(int32_t(0xffff0000u)));
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  return _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7fc00000));
}
inline __m512 round_bf16_ps(__m512 x) { return _mm512_castsi512_ps(bf16_bits_hi(x)); }
// 16 floats -> 16 bf16 (u16) values.
inline __m256i to_bf16_16(__m512 x) { return _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_bits_hi(x), 16)); }

inline __mmask16 tail_mask(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// Converts n floats to bf16 into dst (u16 storage, written through vector stores only),
// zero-filling dst up to n_pad (a multiple of 16).
inline void row_to_bf16(const float* src, int64_t n, void* dst, int64_t n_pad) {
  auto* d = static_cast<char*>(dst);
  for (int64_t i = 0; i < n_pad; i += 16) {
    const __m512 x = i + 16 <= n ? _mm512_loadu_ps(src + i) : _mm512_maskz_loadu_ps(tail_mask(n - i), src + i);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + 2 * i), to_bf16_16(x));
  }
}

}  // namespace zimage::cpu::attn
