// f32 flash attention on AVX-512F: register-blocked FMA micro-kernels and a vectorised exp, online
// softmax over key blocks of 512. Per (batch, kv head) task K is packed once as K^T tiles
// ([D][16 keys]) and V as contiguous rows ([keys][D padded to 16]); query rows go in blocks of 48.
//   S[6 rows][32 keys] = Q·K^T per QK micro-kernel call, O[6 rows][64 d] += P·V per PV call.
#include <cmath>
#include <cstring>
#include <limits>

#include <omp.h>

#include "backend/cpu/kernels.h"

#if !defined(__clang__)  // GCC only: clang takes the ISA from CMakeLists.txt
#pragma GCC push_options
#pragma GCC diagnostic push
// GCC 12 flags the deliberately undefined operands inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")
#endif
#include "backend/cpu/attention_common.h"

namespace zimage::cpu {

namespace {
using namespace attn;

constexpr int64_t kKB = 512;  // keys per online-softmax block
constexpr int64_t kQB = 48;   // query rows per block: a multiple of the 6-row micro-kernels

// Packs keys [0, nkeys) of one kv head (rows `stride` floats apart), zero-padded to 32 keys.
void pack_kv(const float* k, const float* v, int64_t stride, int64_t nkeys, int64_t D, int64_t Dv, float* kp,
             float* vp) {
  const int64_t nkp = round_up(nkeys, 32);
  for (int64_t t = 0; t < nkp / 16; ++t) {
    float* dst = kp + t * 16 * D;
    for (int64_t jj = 0; jj < 16; ++jj) {
      const int64_t j = t * 16 + jj;
      if (j < nkeys) {
        const float* src = k + j * stride;
        for (int64_t d = 0; d < D; ++d) dst[d * 16 + jj] = src[d];
      } else {
        for (int64_t d = 0; d < D; ++d) dst[d * 16 + jj] = 0.f;
      }
    }
  }
  for (int64_t j = 0; j < nkp; ++j)
    for (int64_t c = 0; c < Dv; c += 16) {
      const __m512 x = j < nkeys ? _mm512_maskz_loadu_ps(tail_mask(D - c), v + j * stride + c) : _mm512_setzero_ps();
      _mm512_store_ps(vp + j * Dv + c, x);
    }
}

// S[6][32] = Q[6 rows, D] · K[32 keys, D]^T.  K: two packed K^T tiles. Each chunk of 16 d is
// summed on its own and the chunk sums are then added, which keeps the rounding error of long
// dot products near that of a pairwise sum.
inline void qk_6x32(const float* Q, int64_t D, const float* K, float* S, int64_t lds) {
  __m512 tot[6][2];
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r) tot[r][0] = tot[r][1] = _mm512_setzero_ps();
  const float* K1 = K + 16 * D;
  for (int64_t d0 = 0; d0 < D; d0 += 16) {
    const int64_t d1 = std::min(D, d0 + 16);
    __m512 acc[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < 6; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t d = d0; d < d1; ++d) {
      const __m512 k0 = _mm512_load_ps(K + d * 16), k1 = _mm512_load_ps(K1 + d * 16);
#pragma GCC unroll 6
      for (int r = 0; r < 6; ++r) {
        const __m512 qb = _mm512_set1_ps(Q[r * D + d]);
        acc[r][0] = _mm512_fmadd_ps(qb, k0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(qb, k1, acc[r][1]);
      }
    }
#pragma GCC unroll 6
    for (int r = 0; r < 6; ++r) {
      tot[r][0] = _mm512_add_ps(tot[r][0], acc[r][0]);
      tot[r][1] = _mm512_add_ps(tot[r][1], acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r) {
    _mm512_storeu_ps(S + r * lds, tot[r][0]);
    _mm512_storeu_ps(S + r * lds + 16, tot[r][1]);
  }
}

// O[6][16·NC] += P[6 rows, nk keys] · V[nk keys, 16·NC].
template <int NC>
inline void pv_6xN(const float* P, int64_t ldp, const float* V, int64_t ldv, int64_t nk, float* O, int64_t ldo) {
  __m512 acc[6][NC];
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_loadu_ps(O + r * ldo + c * 16);
  for (int64_t j = 0; j < nk; ++j) {
    __m512 vv[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) vv[c] = _mm512_load_ps(V + j * ldv + c * 16);
#pragma GCC unroll 6
    for (int r = 0; r < 6; ++r) {
      const __m512 pb = _mm512_set1_ps(P[r * ldp + j]);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_fmadd_ps(pb, vv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(O + r * ldo + c * 16, acc[r][c]);
}

void pv_6(const float* P, int64_t ldp, const float* V, int64_t Dv, int64_t nk, float* O) {
  for (int64_t c0 = 0; c0 < Dv; c0 += 64) {
    switch (std::min<int64_t>(4, (Dv - c0) / 16)) {
      case 4:
        pv_6xN<4>(P, ldp, V + c0, Dv, nk, O + c0, Dv);
        break;
      case 3:
        pv_6xN<3>(P, ldp, V + c0, Dv, nk, O + c0, Dv);
        break;
      case 2:
        pv_6xN<2>(P, ldp, V + c0, Dv, nk, O + c0, Dv);
        break;
      default:
        pv_6xN<1>(P, ldp, V + c0, Dv, nk, O + c0, Dv);
        break;
    }
  }
}

// Online-softmax step for one row: sr[0, cnt) scores become exp(score·scale - new max) in place
// (0 up to nkp); returns the factor for the row's accumulator, or a negative value if unchanged.
float softmax_row(float* sr, int64_t cnt, int64_t nkp, float scale, float& m, float& l) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const __m512 zero = _mm512_setzero_ps();
  if (cnt <= 0) {
    for (int64_t j = 0; j < nkp; j += 16) _mm512_storeu_ps(sr + j, zero);
    return -1.f;
  }
  const __m512 vs = _mm512_set1_ps(scale);
  __m512 vmax = _mm512_set1_ps(neg_inf);
  for (int64_t j = 0; j < cnt; j += 16) {
    const __mmask16 mk = tail_mask(cnt - j);
    const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, sr + j), vs);
    _mm512_mask_storeu_ps(sr + j, mk, x);
    vmax = _mm512_mask_max_ps(vmax, mk, vmax, x);
  }
  const float mnew = std::max(m, _mm512_reduce_max_ps(vmax));
  if (mnew == neg_inf) {
    for (int64_t j = 0; j < nkp; j += 16) _mm512_storeu_ps(sr + j, zero);
    return -1.f;
  }
  const __m512 vm = _mm512_set1_ps(mnew);
  __m512 vsum = zero;
  int64_t j = 0;
  for (; j < cnt; j += 16) {
    const __mmask16 mk = tail_mask(cnt - j);
    const __m512 e = _mm512_maskz_mov_ps(mk, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, sr + j), vm)));
    vsum = _mm512_add_ps(vsum, e);
    _mm512_storeu_ps(sr + j, e);
  }
  for (; j < nkp; j += 16) _mm512_storeu_ps(sr + j, zero);
  const float corr = std::exp(m - mnew);
  l = _mm512_reduce_add_ps(vsum) + corr * l;
  m = mnew;
  return corr;
}

}  // namespace

void attention_avx512(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
                      int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid) {
  const int64_t group = Hq / Hkv, Dv = round_up(D, 16);
  const int64_t causal_off = Sk - Sq, Skp = round_up(Sk, 32);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const TaskSplit split(B, Hkv, Sq, omp_get_max_threads(), kQB);
  const int64_t ntasks = split.tasks(B, Hkv);
#pragma omp parallel
  {
    Scratch<float> kp(Skp * D), vp(Skp * Dv), qb(kQB * D), s(kQB * kKB), acc(kQB * Dv), m(kQB), l(kQB);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntasks; ++t) {
      const int64_t qc = t % split.chunks, hk = (t / split.chunks) % Hkv, b = t / (split.chunks * Hkv);
      const int64_t qa = qc * split.chunk_rows, qz = std::min(Sq, qa + split.chunk_rows);
      if (qa >= qz) continue;
      const int64_t valid = key_valid ? std::clamp<int64_t>(key_valid[b], 0, Sk) : Sk;
      const int64_t kend_task = causal ? std::clamp<int64_t>(qz + causal_off, 0, valid) : valid;
      pack_kv(k + (b * Sk * Hkv + hk) * D, v + (b * Sk * Hkv + hk) * D, Hkv * D, kend_task, D, Dv, kp.get(), vp.get());
      for (int64_t g = 0; g < group; ++g) {
        const int64_t h = hk * group + g;
        for (int64_t q0 = qa; q0 < qz; q0 += kQB) {
          const int64_t nq = std::min(kQB, qz - q0), nqp = round_up(nq, 24);
          for (int64_t i = 0; i < nqp; ++i) {
            float* dst = qb.get() + i * D;
            if (i < nq)
              std::memcpy(dst, q + ((b * Sq + q0 + i) * Hq + h) * D, size_t(D) * sizeof(float));
            else
              std::fill_n(dst, D, 0.f);
          }
          std::fill_n(m.get(), kQB, neg_inf);
          std::fill_n(l.get(), kQB, 0.f);
          std::fill_n(acc.get(), nqp * Dv, 0.f);
          const int64_t kend = causal ? std::clamp<int64_t>(q0 + nq + causal_off, 0, valid) : valid;
          for (int64_t k0 = 0; k0 < kend; k0 += kKB) {
            const int64_t nk = std::min(kKB, kend - k0), nkp = round_up(nk, 32);
            for (int64_t i0 = 0; i0 < nqp; i0 += 6)
              for (int64_t j0 = 0; j0 < nkp; j0 += 32)
                qk_6x32(qb.get() + i0 * D, D, kp.get() + (k0 + j0) * D, s.get() + i0 * kKB + j0, kKB);
            for (int64_t i = 0; i < nqp; ++i) {
              const int64_t cnt = i >= nq ? 0 : causal ? std::clamp<int64_t>(q0 + i + causal_off + 1 - k0, 0, nk) : nk;
              const float corr = softmax_row(s.get() + i * kKB, cnt, nkp, scale, m.get()[i], l.get()[i]);
              if (corr >= 0.f && k0 > 0) {
                float* ar = acc.get() + i * Dv;
                const __m512 vc = _mm512_set1_ps(corr);
                for (int64_t d = 0; d < Dv; d += 16)
                  _mm512_storeu_ps(ar + d, _mm512_mul_ps(_mm512_loadu_ps(ar + d), vc));
              }
            }
            for (int64_t i0 = 0; i0 < nqp; i0 += 6)
              pv_6(s.get() + i0 * kKB, kKB, vp.get() + k0 * Dv, Dv, nkp, acc.get() + i0 * Dv);
          }
          for (int64_t i = 0; i < nq; ++i) {
            float* dst = out + ((b * Sq + q0 + i) * Hq + h) * D;
            const float li = l.get()[i];
            const float* ar = acc.get() + i * Dv;
            const __m512 vl = _mm512_set1_ps(li);
            for (int64_t d = 0; d < D; d += 16) {
              const __m512 o = li > 0.f ? _mm512_div_ps(_mm512_loadu_ps(ar + d), vl) : _mm512_setzero_ps();
              _mm512_mask_storeu_ps(dst + d, tail_mask(D - d), o);
            }
          }
        }
      }
    }
  }
}

void exp_avx512(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mk = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, mk, exp_ps(_mm512_maskz_loadu_ps(mk, x + i)));
  }
}

}  // namespace zimage::cpu

#if !defined(__clang__)
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
