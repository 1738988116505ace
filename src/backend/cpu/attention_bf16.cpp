// Attention as torch's CPU flash-attention kernel computes it for bfloat16 tensors
// (aten/src/ATen/native/cpu/FlashAttentionKernel.cpp): keys in blocks of 512, f32 scores
// scaled after the dot product, exp(score - running max) summed in f32 but stored as bf16 before
// the product with V (f32 accumulation), output = acc * (1 / sum) rounded to bf16.
// The AMX / AVX-512 BF16 kernel (attention_bf16_avx512.cpp) runs where the CPU has them; the plain
// loops below are the portable fallback (and the benchmark's baseline).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/kernels.h"

namespace zimage::cpu {

namespace {
constexpr int64_t kQB = 32;   // query rows per task (does not change the numbers)
constexpr int64_t kKB = 512;  // torch's kv_split_size: the block the softmax is taken over

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
}  // namespace

void attention_torch_bf16(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq,
                          int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal,
                          const int64_t* key_valid) {
  if (cpu_has_avx512_bf16())
    attention_torch_bf16_avx512(q, k, v, out, B, Sq, Sk, Hq, Hkv, D, scale, causal, key_valid, cpu_has_amx_bf16());
  else
    attention_torch_bf16_generic(q, k, v, out, B, Sq, Sk, Hq, Hkv, D, scale, causal, key_valid);
}

void attention_torch_bf16_generic(const float* q, const float* k, const float* v, float* out, int64_t B,
                                  int64_t Sq, int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                                  bool causal, const int64_t* key_valid) {
  const int64_t group = Hq / Hkv;
  const int64_t nqb = (Sq + kQB - 1) / kQB;
  const int64_t causal_off = Sk - Sq;
  const float neg_inf = -std::numeric_limits<float>::infinity();
#pragma omp parallel
  {
    std::vector<float> kbuf(size_t(kKB * D)), vbuf(size_t(kKB * D));
    std::vector<float> s(static_cast<size_t>(kKB)), acc(size_t(kQB * D)), m(kQB), l(kQB);
#pragma omp for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t qb = 0; qb < nqb; ++qb) {
          const int64_t hk = h / group;
          const int64_t q0 = qb * kQB, nq = std::min(kQB, Sq - q0);
          std::fill(acc.begin(), acc.end(), 0.f);
          std::fill(m.begin(), m.end(), neg_inf);
          std::fill(l.begin(), l.end(), 0.f);
          int64_t kend = key_valid ? std::min(Sk, key_valid[b]) : Sk;
          if (causal) kend = std::min(kend, q0 + nq - 1 + causal_off + 1);
          for (int64_t k0 = 0; k0 < kend; k0 += kKB) {
            const int64_t nk = std::min(kKB, kend - k0);
            for (int64_t j = 0; j < nk; ++j) {
              const float* ks = k + ((b * Sk + k0 + j) * Hkv + hk) * D;
              const float* vs = v + ((b * Sk + k0 + j) * Hkv + hk) * D;
              std::copy(ks, ks + D, kbuf.begin() + j * D);
              std::copy(vs, vs + D, vbuf.begin() + j * D);
            }
            for (int64_t i = 0; i < nq; ++i) {
              const float* qi = q + ((b * Sq + q0 + i) * Hq + h) * D;
              const int64_t jmax = causal ? std::min(nk, q0 + i + causal_off - k0 + 1) : nk;
              if (jmax <= 0) continue;  // the whole block is masked for this row: no change
              float mx = neg_inf;
              for (int64_t j = 0; j < jmax; ++j) {
                s[size_t(j)] = dot(qi, kbuf.data() + j * D, D) * scale;
                mx = std::max(mx, s[size_t(j)]);
              }
              mx = std::max(mx, m[size_t(i)]);
              float sum = 0.f;
              for (int64_t j = 0; j < jmax; ++j) {
                const float e = std::exp(s[size_t(j)] - mx);
                sum += e;
                s[size_t(j)] = round_bf16(e);  // torch stores the probabilities as bf16
              }
              const float corr = std::exp(m[size_t(i)] - mx);
              l[size_t(i)] = sum + corr * l[size_t(i)];
              m[size_t(i)] = mx;
              float* ai = acc.data() + i * D;
              if (k0 > 0) {
#pragma omp simd
                for (int64_t d = 0; d < D; ++d) ai[d] *= corr;
              }
              for (int64_t j = 0; j < jmax; ++j) {
                const float p = s[size_t(j)];
                const float* vj = vbuf.data() + j * D;
#pragma omp simd
                for (int64_t d = 0; d < D; ++d) ai[d] += p * vj[d];
              }
            }
          }
          for (int64_t i = 0; i < nq; ++i) {
            float* dst = out + ((b * Sq + q0 + i) * Hq + h) * D;
            const float inv = 1.f / (l[size_t(i)] == 0.f ? 1.f : l[size_t(i)]);
            for (int64_t d = 0; d < D; ++d) dst[d] = round_bf16(acc[size_t(i * D + d)] * inv);
          }
        }
  }
}

}  // namespace zimage::cpu
