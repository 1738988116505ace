// Flash-style attention on the CPU: query blocks × key blocks with an online softmax, so the
// working memory is O(block × head_dim) per thread, never O(S²). The AVX-512 kernel
// (attention_f32_avx512.cpp) runs where the CPU has AVX-512; the plain loops below are the
// portable fallback (and the benchmark's baseline).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend/cpu/kernels.h"

namespace zimage::cpu {

namespace {
constexpr int64_t kQB = 32;   // query rows per block
constexpr int64_t kKB = 128;  // keys per block

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
}  // namespace

bool cpu_has_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return ok;
}

bool cpu_has_avx512_bf16() {
  static const bool ok = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
  return ok;
}

bool cpu_has_amx_bf16() {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!cpu_has_avx512_bf16() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool amx_bf16 = (d >> 22) & 1u, amx_tile = (d >> 24) & 1u;
    if (!amx_bf16 || !amx_tile) return false;
    // Linux hands out the 8 KiB tile state only on request (arch_prctl ARCH_REQ_XCOMP_PERM for
    // XFEATURE_XTILEDATA); the permission is process-wide.
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}

void attention(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
               int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid) {
  if (cpu_has_avx512())
    attention_avx512(q, k, v, out, B, Sq, Sk, Hq, Hkv, D, scale, causal, key_valid);
  else
    attention_generic(q, k, v, out, B, Sq, Sk, Hq, Hkv, D, scale, causal, key_valid);
}

void exp_f32(const float* x, float* y, int64_t n) {
  if (cpu_has_avx512())
    exp_avx512(x, y, n);
  else
    for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

void attention_generic(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq,
                       int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal,
                       const int64_t* key_valid) {
  const int64_t group = Hq / Hkv;
  const int64_t nqb = (Sq + kQB - 1) / kQB;
  const int64_t causal_off = Sk - Sq;
  const float neg_inf = -std::numeric_limits<float>::infinity();
#pragma omp parallel
  {
    std::vector<float> qbuf(size_t(kQB * D)), kbuf(size_t(kKB * D)), vbuf(size_t(kKB * D));
    std::vector<float> s(size_t(kQB * kKB)), acc(size_t(kQB * D)), m(kQB), l(kQB);
#pragma omp for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t qb = 0; qb < nqb; ++qb) {
          const int64_t hk = h / group;
          const int64_t q0 = qb * kQB, nq = std::min(kQB, Sq - q0);
          for (int64_t i = 0; i < nq; ++i) {
            const float* src = q + ((b * Sq + q0 + i) * Hq + h) * D;
            for (int64_t d = 0; d < D; ++d) qbuf[size_t(i * D + d)] = src[d] * scale;
          }
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
              float* si = s.data() + i * kKB;
              const float* qi = qbuf.data() + i * D;
              const int64_t jmax = causal ? std::min(nk, q0 + i + causal_off - k0 + 1) : nk;
              float mx = m[size_t(i)];
              for (int64_t j = 0; j < jmax; ++j) {
                si[j] = dot(qi, kbuf.data() + j * D, D);
                mx = std::max(mx, si[j]);
              }
              if (jmax <= 0) continue;
              const float corr = std::exp(m[size_t(i)] - mx);
              float* ai = acc.data() + i * D;
              float sum = 0.f;
              for (int64_t j = 0; j < jmax; ++j) {
                si[j] = std::exp(si[j] - mx);
                sum += si[j];
              }
              l[size_t(i)] = l[size_t(i)] * corr + sum;
              m[size_t(i)] = mx;
#pragma omp simd
              for (int64_t d = 0; d < D; ++d) ai[d] *= corr;
              for (int64_t j = 0; j < jmax; ++j) {
                const float p = si[j];
                const float* vj = vbuf.data() + j * D;
#pragma omp simd
                for (int64_t d = 0; d < D; ++d) ai[d] += p * vj[d];
              }
            }
          }
          for (int64_t i = 0; i < nq; ++i) {
            float* dst = out + ((b * Sq + q0 + i) * Hq + h) * D;
            const float inv = l[size_t(i)] > 0.f ? 1.f / l[size_t(i)] : 0.f;
            for (int64_t d = 0; d < D; ++d) dst[d] = acc[size_t(i * D + d)] * inv;
          }
        }
  }
}

}  // namespace zimage::cpu
