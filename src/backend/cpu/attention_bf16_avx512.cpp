// torch's bf16 CPU flash attention (see plain_kernels.inc, attention_bf16, for the semantics) with bf16 products
// and f32 accumulation for Q·K^T and P·V, as torch's bf16 GEMMs: AMX tiles (TDPBF16PS) where the
// CPU and OS allow them, else AVX-512 BF16 (VDPBF16PS). Per (batch, kv head) task, K and V are
// packed once into bf16 layouts that both the AMX tiles and the AVX-512 micro-kernels read:
//   K: tiles of 16 keys, [D/2][16 keys] pairs of d   (an AMX B tile per 32 d)
//   V: [keys/2][D] pairs of keys                     (an AMX B tile per 32 keys × 16 d)
// Keys are taken in torch's blocks of 512 (the online-softmax block); query rows in blocks of 32
// (AMX: 2 × 16-row tiles) or 48 (AVX-512: 8-row Q·K^T and 6-row P·V micro-kernels).
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
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma,amx-tile,amx-bf16")
#endif
#include "backend/cpu/amx_tiles.h"
#include "backend/cpu/attention_common.h"

namespace zimage::cpu {

namespace {
using namespace attn;

constexpr int64_t kKB = 512;    // torch's kv_split_size: the block the softmax is taken over
constexpr int64_t kQBAvx = 48;  // query rows per block, AVX-512: a multiple of the 8- and 6-row micro-kernels
constexpr int64_t kQBAmx = 32;  // query rows per block, AMX: two 16-row tiles

// Packs keys [0, nkeys) of one kv head (rows `stride` floats apart) into bf16, zero-padded to a
// multiple of 32 keys and to Dk / Dv (multiples of 32) along d.
void pack_kv(const float* k, const float* v, int64_t stride, int64_t nkeys, int64_t D, int64_t Dk, int64_t Dv,
             uint32_t* kp, uint32_t* vp, uint32_t* tmp) {
  const int64_t nkp = round_up(nkeys, 32), half = Dk / 2;
  for (int64_t t = 0; t < nkp / 16; ++t) {
    for (int64_t jj = 0; jj < 16; ++jj) {
      const int64_t j = t * 16 + jj;
      row_to_bf16(j < nkeys ? k + j * stride : k, j < nkeys ? D : 0, tmp + jj * half, Dk);
    }
    uint32_t* dst = kp + t * 16 * half;
    for (int64_t dp = 0; dp < half; ++dp)
      for (int64_t jj = 0; jj < 16; ++jj) dst[dp * 16 + jj] = tmp[jj * half + dp];
  }
  for (int64_t jp = 0; jp < nkp / 2; ++jp) {
    const int64_t j0 = 2 * jp, j1 = 2 * jp + 1;
    for (int64_t c = 0; c < Dv; c += 16) {
      const __mmask16 m = tail_mask(D - c);
      const __m512 a = j0 < nkeys ? _mm512_maskz_loadu_ps(m, v + j0 * stride + c) : _mm512_setzero_ps();
      const __m512 b = j1 < nkeys ? _mm512_maskz_loadu_ps(m, v + j1 * stride + c) : _mm512_setzero_ps();
      const __m512i pair = _mm512_or_si512(_mm512_srli_epi32(bf16_bits_hi(a), 16), bf16_bits_hi(b));
      _mm512_store_si512(vp + jp * Dv + c, pair);
    }
  }
}

// S[8][32] = Q[8 rows, Dk] · K[32 keys, Dk]^T.  Q: u32 pairs, row stride `half`; K: two packed tiles.
inline void qk_8x32(const uint32_t* Q, int64_t half, const uint32_t* K, float* S, int64_t lds) {
  __m512 acc[8][2];
#pragma GCC unroll 8
  for (int r = 0; r < 8; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const uint32_t* K1 = K + 16 * half;
  for (int64_t dp = 0; dp < half; ++dp) {
    const __m512bh k0 = (__m512bh)_mm512_load_si512(K + dp * 16);
    const __m512bh k1 = (__m512bh)_mm512_load_si512(K1 + dp * 16);
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) {
      const __m512bh qb = (__m512bh)_mm512_set1_epi32(int(Q[r * half + dp]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], k0, qb);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], k1, qb);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < 8; ++r) {
    _mm512_storeu_ps(S + r * lds, acc[r][0]);
    _mm512_storeu_ps(S + r * lds + 16, acc[r][1]);
  }
}

// O[6][16·NC] += P[6 rows, 2·npairs keys] · V[2·npairs keys, 16·NC].  P: u32 key pairs, row stride ldp.
template <int NC>
inline void pv_6xN(const uint32_t* P, int64_t ldp, const uint32_t* V, int64_t ldv, int64_t npairs, float* O,
                   int64_t ldo) {
  __m512 acc[6][NC];
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_loadu_ps(O + r * ldo + c * 16);
  for (int64_t jp = 0; jp < npairs; ++jp) {
    __m512bh vv[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) vv[c] = (__m512bh)_mm512_load_si512(V + jp * ldv + c * 16);
#pragma GCC unroll 6
    for (int r = 0; r < 6; ++r) {
      const __m512bh pb = (__m512bh)_mm512_set1_epi32(int(P[r * ldp + jp]));
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], vv[c], pb);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(O + r * ldo + c * 16, acc[r][c]);
}

void pv_6(const uint32_t* P, int64_t ldp, const uint32_t* V, int64_t Dv, int64_t npairs, float* O) {
  for (int64_t c0 = 0; c0 < Dv; c0 += 64) {
    switch (std::min<int64_t>(4, (Dv - c0) / 16)) {
      case 4:
        pv_6xN<4>(P, ldp, V + c0, Dv, npairs, O + c0, Dv);
        break;
      case 3:
        pv_6xN<3>(P, ldp, V + c0, Dv, npairs, O + c0, Dv);
        break;
      case 2:
        pv_6xN<2>(P, ldp, V + c0, Dv, npairs, O + c0, Dv);
        break;
      default:
        pv_6xN<1>(P, ldp, V + c0, Dv, npairs, O + c0, Dv);
        break;
    }
  }
}

// AMX (amx_tiles.h): tmm0-3 accumulate a 32 × 32 f32 block, tmm4-5 hold the two 16-row A tiles
// and tmm6-7 the two B tiles.
void qk_amx(const uint32_t* Q, int64_t half, const uint32_t* K, int64_t nkp, float* S, int64_t lds) {
  const int64_t qs = half * 4;
  for (int64_t j0 = 0; j0 < nkp; j0 += 32) {
    amx_zero_c();
    const uint32_t* K0 = K + j0 * half;  // keys j0 .. j0+15: [half][16]
    const uint32_t* K1 = K0 + 16 * half;
    for (int64_t c = 0; c < half; c += 16)  // 32 d at a time
      amx_step_2x2(Q + c, Q + 16 * half + c, qs, K0 + c * 16, K1 + c * 16, 64);
    amx_store_c(S + j0, lds);
  }
}

// O[32][Dv] (stride Dv) += P[32 rows, nkp keys] · V[nkp keys, Dv].  P: u32 key pairs, row stride ldp.
void pv_amx(const uint32_t* P, int64_t ldp, const uint32_t* V, int64_t Dv, int64_t nkp, float* O) {
  const int64_t ps = ldp * 4, vs = Dv * 4;
  for (int64_t d0 = 0; d0 < Dv; d0 += 32) {
    amx_load_c(O + d0, Dv);
    for (int64_t j0 = 0; j0 < nkp; j0 += 32)
      amx_step_2x2(P + j0 / 2, P + 16 * ldp + j0 / 2, ps, V + (j0 / 2) * Dv + d0, V + (j0 / 2) * Dv + d0 + 16, vs);
    amx_store_c(O + d0, Dv);
  }
}

// One row of torch's block softmax step: scores*scale, block max, exp(x - max) summed in f32 and
// stored as bf16 (zero for masked keys up to nkp), running max/sum update. Returns the factor the
// row's accumulator must be multiplied by, or a negative value when the row is unchanged.
// The probabilities are rounded by VCVTNE2PS2BF16 (nearest-even, as torch; it flushes values below
// 2^-126 to 0 where torch keeps a denormal bf16: such a term is < 1e-38 of the row sum).
float softmax_row(const float* sr, int64_t cnt, int64_t nkp, float scale, float& m, float& l, uint32_t* prow) {
  auto* p16 = reinterpret_cast<char*>(prow);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const __m256i zero = _mm256_setzero_si256();
  auto zero_from = [&](int64_t j) {
    for (; j < nkp; j += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p16 + 2 * j), zero);
  };
  if (cnt <= 0) {
    zero_from(0);
    return -1.f;
  }
  const __m512 vs = _mm512_set1_ps(scale);
  __m512 vmax = _mm512_set1_ps(neg_inf);
  int64_t j = 0;
  for (; j + 16 <= cnt; j += 16) vmax = _mm512_max_ps(vmax, _mm512_mul_ps(_mm512_loadu_ps(sr + j), vs));
  float mx = neg_inf;
  for (int64_t t = j; t < cnt; ++t) mx = std::max(mx, sr[t] * scale);
  mx = std::max(mx, _mm512_reduce_max_ps(vmax));
  const float mnew = std::max(m, mx);
  if (mnew == neg_inf) {  // every score is -inf: torch fills the probabilities with 0
    zero_from(0);
    return -1.f;
  }
  // exp(x - max) with x = score * scale rounded first, as torch stores the scaled scores.
  const __m512 vm = _mm512_set1_ps(mnew);
  auto expo = [&](__m512 s) { return exp_ps(_mm512_sub_ps(_mm512_mul_ps(s, vs), vm)); };
  __m512 vsum = _mm512_setzero_ps();
  for (j = 0; j + 32 <= cnt; j += 32) {
    const __m512 e0 = expo(_mm512_loadu_ps(sr + j)), e1 = expo(_mm512_loadu_ps(sr + j + 16));
    vsum = _mm512_add_ps(_mm512_add_ps(vsum, e0), e1);
    _mm512_storeu_si512(p16 + 2 * j, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
  }
  if (j + 16 <= cnt) {
    const __m512 e = expo(_mm512_loadu_ps(sr + j));
    vsum = _mm512_add_ps(vsum, e);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p16 + 2 * j), (__m256i)_mm512_cvtneps_pbh(e));
    j += 16;
  }
  float sum = _mm512_reduce_add_ps(vsum);
  if (j < cnt) {  // the tail, added one by one after the vector part as torch does
    const __mmask16 mk = tail_mask(cnt - j);
    const __m512 e = _mm512_maskz_mov_ps(mk, expo(_mm512_maskz_loadu_ps(mk, sr + j)));
    alignas(64) float et[16];
    _mm512_store_ps(et, e);
    for (int64_t t = 0; t < cnt - j; ++t) sum += et[t];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p16 + 2 * j), (__m256i)_mm512_cvtneps_pbh(e));
    j += 16;
  }
  zero_from(j);
  const float corr = std::exp(m - mnew);
  l = sum + corr * l;
  m = mnew;
  return corr;
}

}  // namespace

void attention_torch_bf16_avx512(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq,
                                 int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal,
                                 const int64_t* key_valid, bool amx) {
  amx = amx && cpu_has_amx_bf16();  // also makes sure the OS granted the tile state
  const int64_t group = Hq / Hkv, Dk = round_up(D, 32), Dv = round_up(D, 32), half = Dk / 2;
  const int64_t kQB = amx ? kQBAmx : kQBAvx, row_pad = amx ? kQBAmx : 24;
  const int64_t causal_off = Sk - Sq, Skp = round_up(Sk, 32);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const TaskSplit split(B, Hkv, Sq, omp_get_max_threads(), kQB);
  const int64_t ntasks = split.tasks(B, Hkv);
#pragma omp parallel
  {
    Scratch<uint32_t> kp(Skp * half), vp(Skp / 2 * Dv), tmp(16 * half), q32(kQB * half), p32(kQB * kKB / 2);
    Scratch<float> s(kQB * kKB), acc(kQB * Dv), m(kQB), l(kQB);
    if (amx) amx_configure_full_tiles();
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntasks; ++t) {
      const int64_t qc = t % split.chunks, hk = (t / split.chunks) % Hkv, b = t / (split.chunks * Hkv);
      const int64_t qa = qc * split.chunk_rows, qz = std::min(Sq, qa + split.chunk_rows);
      if (qa >= qz) continue;
      const int64_t valid = key_valid ? std::clamp<int64_t>(key_valid[b], 0, Sk) : Sk;
      const int64_t kend_task = causal ? std::clamp<int64_t>(qz + causal_off, 0, valid) : valid;
      const int64_t kv_stride = Hkv * D;
      pack_kv(k + (b * Sk * Hkv + hk) * D, v + (b * Sk * Hkv + hk) * D, kv_stride, kend_task, D, Dk, Dv, kp.get(),
              vp.get(), tmp.get());
      for (int64_t g = 0; g < group; ++g) {
        const int64_t h = hk * group + g;
        for (int64_t q0 = qa; q0 < qz; q0 += kQB) {
          const int64_t nq = std::min(kQB, qz - q0), nqp = round_up(nq, row_pad);
          for (int64_t i = 0; i < nqp; ++i)
            row_to_bf16(i < nq ? q + ((b * Sq + q0 + i) * Hq + h) * D : q, i < nq ? D : 0, q32.get() + i * half, Dk);
          std::fill_n(m.get(), kQB, neg_inf);
          std::fill_n(l.get(), kQB, 0.f);
          std::fill_n(acc.get(), nqp * Dv, 0.f);
          const int64_t kend = causal ? std::clamp<int64_t>(q0 + nq + causal_off, 0, valid) : valid;
          for (int64_t k0 = 0; k0 < kend; k0 += kKB) {
            const int64_t nk = std::min(kKB, kend - k0), nkp = round_up(nk, 32);
            if (amx)
              qk_amx(q32.get(), half, kp.get() + k0 * half, nkp, s.get(), kKB);
            else
              for (int64_t i0 = 0; i0 < nqp; i0 += 8)
                for (int64_t j0 = 0; j0 < nkp; j0 += 32)
                  qk_8x32(q32.get() + i0 * half, half, kp.get() + (k0 + j0) * half, s.get() + i0 * kKB + j0, kKB);
            for (int64_t i = 0; i < nqp; ++i) {
              const int64_t cnt = i >= nq ? 0 : causal ? std::clamp<int64_t>(q0 + i + causal_off + 1 - k0, 0, nk) : nk;
              const float corr =
                  softmax_row(s.get() + i * kKB, cnt, nkp, scale, m.get()[i], l.get()[i], p32.get() + i * (kKB / 2));
              if (corr >= 0.f && k0 > 0) {
                float* ar = acc.get() + i * Dv;
                const __m512 vc = _mm512_set1_ps(corr);
                for (int64_t d = 0; d < Dv; d += 16)
                  _mm512_storeu_ps(ar + d, _mm512_mul_ps(_mm512_loadu_ps(ar + d), vc));
              }
            }
            if (amx)
              pv_amx(p32.get(), kKB / 2, vp.get() + (k0 / 2) * Dv, Dv, nkp, acc.get());
            else
              for (int64_t i0 = 0; i0 < nqp; i0 += 6)
                pv_6(p32.get() + i0 * (kKB / 2), kKB / 2, vp.get() + (k0 / 2) * Dv, Dv, nkp / 2, acc.get() + i0 * Dv);
          }
          for (int64_t i = 0; i < nq; ++i) {
            float* dst = out + ((b * Sq + q0 + i) * Hq + h) * D;
            const float li = l.get()[i];
            const __m512 inv = _mm512_set1_ps(1.f / (li == 0.f ? 1.f : li));
            const float* ar = acc.get() + i * Dv;
            for (int64_t d = 0; d < D; d += 16)
              _mm512_mask_storeu_ps(dst + d, tail_mask(D - d),
                                    round_bf16_ps(_mm512_mul_ps(_mm512_loadu_ps(ar + d), inv)));
          }
        }
      }
    }
    if (amx) amx_release_tiles();
  }
}

}  // namespace zimage::cpu

#if !defined(__clang__)
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
