// The integer GEMM tile (qgemm_kernels.h) with AVX-512 VNNI: vpdpbusd multiplies unsigned by
// signed bytes, so the activations come as q + 128 (uint8) and each block's integer accumulator
// starts at the panel's -128 * sum(q_w), which leaves exactly sum(q_x * q_w). One zmm holds a
// group of 4 values of 16 weight rows; a broadcast of 4 activation bytes meets all 16 at once.
// 4-bit panels are split into their two groups with a shift and two masks per 64 bytes.
#include <climits>
#include <cstdint>
#include <vector>

#include "backend/cpu/qgemm_kernels.h"

#if !defined(__clang__)  // GCC only: clang takes the ISA from CMakeLists.txt
#pragma GCC push_options
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12: _mm512_undefined_epi32 in its own intrinsics
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma")
#endif
#include <immintrin.h>

namespace zimage::cpu::avx512 {
namespace {

// Round to nearest even bf16 bits (NaN -> 0x7fc0), exactly as f32_to_bf16.
inline __m512i bf16_bits(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7fc0));
}

// The tile's sums (+ bias) into t.y (qgemm_kernels.h), columns past t.nn left alone.
template <int MR, int NP>
inline void store(const QTile& t, const __m512 (&acc)[MR][NP]) {
  for (int j = 0; j < NP; ++j) {
    const int left = t.nn - j * 16;
    const __mmask16 k = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    const __m512 b = t.bias ? _mm512_maskz_loadu_ps(k, t.bias + j * 16) : _mm512_setzero_ps();
    for (int m = 0; m < MR; ++m) {
      const __m512 v = t.bias ? _mm512_add_ps(acc[m][j], b) : acc[m][j];
      if (t.y_bf16)
        _mm256_mask_storeu_epi16(static_cast<uint16_t*>(t.y) + m * t.ldy + j * 16, k,
                                 _mm512_cvtepi32_epi16(bf16_bits(v)));
      else
        _mm512_mask_storeu_ps(static_cast<float*>(t.y) + m * t.ldy + j * 16, k, v);
    }
  }
}

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
  store(t, acc);
}

template <int G, bool ASYM, bool NIB = false, bool OFF = false>
void by_shape(const QTile& t) {
  static constexpr QTileKernel k[kQTileMaxRows][2] = {
      {tile<1, 1, G, ASYM, NIB, OFF>, tile<1, 2, G, ASYM, NIB, OFF>},
      {tile<2, 1, G, ASYM, NIB, OFF>, tile<2, 2, G, ASYM, NIB, OFF>},
      {tile<3, 1, G, ASYM, NIB, OFF>, tile<3, 2, G, ASYM, NIB, OFF>},
      {tile<4, 1, G, ASYM, NIB, OFF>, tile<4, 2, G, ASYM, NIB, OFF>},
  };
  k[t.mr - 1][t.np - 1](t);
}

// ---- the panel packer (qgemm_kernels.h): the bytes of qgemm_pack_panel_scalar, the 16 rows at
// once: a gather of 4 bytes per row makes one 64-byte group of the panel, vpdpbusd by ones sums it.

// 16 IEEE halves (the low 16 bits of each lane) as float32, exactly as core's f16_to_f32
// (signalling NaNs kept as they are, which vcvtph2ps would quiet).
__m512 halves_to_f32(__m512i h) {
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(h, _mm512_set1_epi32(0x8000)), 16);
  const __m512i e = _mm512_and_si512(_mm512_srli_epi32(h, 10), _mm512_set1_epi32(0x1F));
  const __m512i man = _mm512_and_si512(h, _mm512_set1_epi32(0x3FF));
  __m512i r = _mm512_add_epi32(_mm512_slli_epi32(_mm512_and_si512(h, _mm512_set1_epi32(0x7FFF)), 13),
                               _mm512_set1_epi32(112 << 23));
  r = _mm512_mask_mov_epi32(r, _mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32(31)),
                            _mm512_or_si512(_mm512_slli_epi32(man, 13), _mm512_set1_epi32(0x7F800000)));
  const __m512 sub = _mm512_mul_ps(_mm512_cvtepi32_ps(man), _mm512_set1_ps(0x1p-24f));  // exact
  r = _mm512_mask_mov_epi32(r, _mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512()), _mm512_castps_si512(sub));
  return _mm512_castsi512_ps(_mm512_or_si512(r, sign));
}

// 4 bytes of each lane l at p + idx[l] (lanes outside `valid`: zeros).
inline __m512i gather(const void* p, __m512i idx, __mmask16 valid) {
  return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, idx, p, 1);
}
inline __m512i sum4(__m512i acc, __m512i v) { return _mm512_dpbusd_epi32(acc, _mm512_set1_epi8(1), v); }
inline void store_neg(int32_t* neg, __m512i sum) {
  _mm512_store_si512(neg, _mm512_mullo_epi32(sum, _mm512_set1_epi32(-128)));
}

struct PanelOut {
  int8_t* q;
  float* s;
  float* mn;
  int32_t* neg;
  explicit PanelOut(const QPackJob& j)
      : q(reinterpret_cast<int8_t*>(j.dst)),
        s(reinterpret_cast<float*>(j.dst + j.L.s_at())),
        mn(j.L.asym ? reinterpret_cast<float*>(j.dst + j.L.mn_at()) : nullptr),
        neg(reinterpret_cast<int32_t*>(j.dst + j.L.neg_at())) {}
};

// Q8_0 and Q4_0: blocks of 32 as d (f16) and the values (32 int8, or 16 bytes of two nibbles,
// which are the 4-bit panel's bytes as they are).
void pack_d(const QPackJob& j, __m512i idx, __mmask16 valid) {
  const PanelOut o(j);
  const bool nib = j.L.nib;
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  for (int64_t b = 0; b < j.L.nb; ++b) {
    const uint8_t* blk = j.w + b * j.f->bytes;
    qpack_prefetch(j, (b + 16) * j.f->bytes, 1);  // blocks are < 64 bytes: every line of the rows
    __m512i sum = _mm512_setzero_si512();
    for (int g = 0; g < (nib ? 4 : 8); ++g) {
      const __m512i v = gather(blk + 2 + g * 4, idx, valid);
      _mm512_store_si512(o.q + b * (nib ? 256 : 512) + g * 64, v);
      if (nib) {
        sum = sum4(sum, _mm512_and_si512(v, lo4));
        sum = sum4(sum, _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4));
      } else {
        sum = sum4(sum, v);
      }
    }
    store_neg(o.neg + b * 16, sum);
    _mm512_store_ps(o.s + b * 16, halves_to_f32(gather(blk, idx, valid)));
  }
}

// Scales and offsets of `per` blocks from each row's stored block (plain loops: one call per row
// and stored block), transposed into the panel's s[b][16], mn[b][16] from block b0 on.
void scales_of(const QPackJob& j, const uint8_t* sb, int64_t b0, const PanelOut& o, float* ss, float* mm, int per) {
  for (int l = 0; l < j.rows; ++l) j.f->scales(sb + size_t(l) * j.row_bytes, ss + l * per, mm + l * per);
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(per));
  const __mmask16 valid = __mmask16((1u << j.rows) - 1);
  for (int b = 0; b < per; ++b) {
    _mm512_store_ps(o.s + (b0 + b) * 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, idx, ss + b, 4));
    if (o.mn)
      _mm512_store_ps(o.mn + (b0 + b) * 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, idx, mm + b, 4));
  }
}

// Q4_K: per stored block, sub-blocks 2p and 2p + 1 are the low and high nibbles of the same 32
// bytes qs[32p, 32p + 32); the panel byte of group g < 4 pairs value g * 4 + i with 16 + g * 4 + i.
void pack_q4_k(const QPackJob& j, __m512i idx, __mmask16 valid) {
  const PanelOut o(j);
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  alignas(64) float ss[16 * 8], mm[16 * 8];
  for (int64_t i = 0; i < j.K / 256; ++i) {
    const uint8_t* sb = j.w + i * 144;
    qpack_prefetch(j, (i + 4) * 144, 144);
    scales_of(j, sb, i * 8, o, ss, mm, 8);
    for (int p = 0; p < 4; ++p) {
      const uint8_t* qs = sb + 16 + p * 32;
      int8_t* qe = o.q + (i * 8 + 2 * p) * 256;
      __m512i se = _mm512_setzero_si512(), so = _mm512_setzero_si512();
      for (int g = 0; g < 4; ++g) {
        const __m512i a = gather(qs + g * 4, idx, valid), c = gather(qs + 16 + g * 4, idx, valid);
        const __m512i alo = _mm512_and_si512(a, lo4), ahi = _mm512_and_si512(_mm512_srli_epi16(a, 4), lo4);
        const __m512i clo = _mm512_and_si512(c, lo4), chi = _mm512_and_si512(_mm512_srli_epi16(c, 4), lo4);
        _mm512_store_si512(qe + g * 64, _mm512_or_si512(alo, _mm512_slli_epi16(clo, 4)));
        _mm512_store_si512(qe + 256 + g * 64, _mm512_or_si512(ahi, _mm512_slli_epi16(chi, 4)));
        se = sum4(sum4(se, alo), clo);
        so = sum4(sum4(so, ahi), chi);
      }
      store_neg(o.neg + (i * 8 + 2 * p) * 16, se);
      store_neg(o.neg + (i * 8 + 2 * p + 1) * 16, so);
    }
  }
}

// Q6_K's values of one stored block (ql[128], qh[64]): value g * 128 + r is the nibble r / 64 of
// ql[g * 64 + r % 64] with bits 2 (r / 32) .. + 1 of qh[g * 32 + r % 32] above it, minus 32.
void unpack_q6_k(const uint8_t* b, int8_t* q, float* s, float* mn, const QFormat& f) {
  f.scales(b, s, mn);
  const __m512i lo4 = _mm512_set1_epi8(0x0F), three = _mm512_set1_epi8(3), c32 = _mm512_set1_epi8(32);
  const __m512i sh_a = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);  // 0 | 2
  const __m512i sh_b = _mm512_add_epi16(sh_a, _mm512_set1_epi16(4));                         // 4 | 6
  for (int g = 0; g < 2; ++g) {
    const __m512i l = _mm512_loadu_si512(b + g * 64);
    const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + g * 32)));
    const __m512i lo0 = _mm512_and_si512(l, lo4), lo1 = _mm512_and_si512(_mm512_srli_epi16(l, 4), lo4);
    const __m512i hi0 = _mm512_and_si512(_mm512_srlv_epi16(h, sh_a), three);
    const __m512i hi1 = _mm512_and_si512(_mm512_srlv_epi16(h, sh_b), three);
    _mm512_storeu_si512(q + g * 128, _mm512_sub_epi8(_mm512_or_si512(lo0, _mm512_slli_epi16(hi0, 4)), c32));
    _mm512_storeu_si512(q + g * 128 + 64, _mm512_sub_epi8(_mm512_or_si512(lo1, _mm512_slli_epi16(hi1, 4)), c32));
  }
}

// Q5_K's values of one stored block (qh[32] at 16, qs[128] at 48): value j * 32 + l is the nibble
// j % 2 of qs[(j / 2) * 32 + l] with bit j of qh[l] above it.
void unpack_q5_k(const uint8_t* b, int8_t* q, float* s, float* mn, const QFormat& f) {
  f.scales(b, s, mn);
  const __m256i lo4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
  for (int p = 0; p < 4; ++p) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 48 + p * 32));
    const __m256i lo = _mm256_and_si256(a, lo4), hi = _mm256_and_si256(_mm256_srli_epi16(a, 4), lo4);
    const __m256i be = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * p)), one);
    const __m256i bo = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * p + 1)), one);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 2 * p * 32), _mm256_or_si256(lo, _mm256_slli_epi16(be, 4)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 2 * p * 32 + 32), _mm256_or_si256(hi, _mm256_slli_epi16(bo, 4)));
  }
}

// The other types: the 16 rows' stored blocks unpacked (QFormat::unpack, or the vectorised Q5_K /
// Q6_K ones above), their values transposed into the panel.
template <int G>
void pack_generic(const QPackJob& j) {
  const PanelOut o(j);
  const QFormat& f = *j.f;
  const int64_t S = f.super, per = S / G;
  std::vector<int8_t> qv(size_t(16 * S), 0);
  std::vector<float> sv(size_t(16 * per), 0.f), mv(size_t(16 * per), 0.f);
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(int(S)));
  for (int64_t i = 0; i < j.K / S; ++i) {
    qpack_prefetch(j, (i + 4) * f.bytes, f.bytes);
    for (int l = 0; l < j.rows; ++l) {
      const uint8_t* src = j.w + size_t(l) * j.row_bytes + i * f.bytes;
      int8_t* ql = qv.data() + l * S;
      float *sl = sv.data() + l * per, *ml = mv.data() + l * per;
      if (f.pack == QFormat::Pack::Q6_K)
        unpack_q6_k(src, ql, sl, ml, f);
      else if (f.pack == QFormat::Pack::Q5_K)
        unpack_q5_k(src, ql, sl, ml, f);
      else
        f.unpack(src, ql, sl, ml);
    }
    for (int64_t b = 0; b < per; ++b) {
      const int64_t gb = i * per + b;
      __m512i sum = _mm512_setzero_si512();
      for (int g = 0; g < G / 4; ++g) {
        const __m512i v = gather(qv.data() + b * G + g * 4, idx, 0xFFFF);
        _mm512_store_si512(o.q + gb * G * 16 + g * 64, v);
        sum = sum4(sum, v);
      }
      store_neg(o.neg + gb * 16, sum);
      for (int l = 0; l < 16; ++l) {
        o.s[gb * 16 + l] = sv[size_t(l * per + b)];
        if (o.mn) o.mn[gb * 16 + l] = mv[size_t(l * per + b)];
      }
    }
  }
}

// ---- the activations (QQuantizeRow), as q + 128 ----
template <int G, bool BF16>
void quantize_blocks(const void* xv, int64_t K, int8_t* q, float* d, float* s) {
  constexpr int V = G / 16;  // vectors per block
  for (int64_t b = 0; b < K / G; ++b) {
    __m512 x[V];
    for (int v = 0; v < V; ++v) {
      const int64_t at = b * G + v * 16;
      if (BF16)
        x[v] = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(xv) + at))),
            16));
      else
        x[v] = _mm512_loadu_ps(static_cast<const float*>(xv) + at);
    }
    __m512 amax = _mm512_abs_ps(x[0]);
    for (int v = 1; v < V; ++v) amax = _mm512_max_ps(amax, _mm512_abs_ps(x[v]));
    __mmask16 bad = 0;
    for (int v = 0; v < V; ++v)
      bad |= _mm512_cmpgt_epi32_mask(_mm512_castps_si512(_mm512_abs_ps(x[v])), _mm512_set1_epi32(0x7F7FFFFF));
    int8_t* qb = q + b * G;
    if (bad) {  // a NaN or an infinity
      d[b] = __builtin_nanf("");
      s[b] = 0.f;
      __builtin_memset(qb, 0x80, G);
      continue;
    }
    const float am = _mm512_reduce_max_ps(amax);
    const float db = am >= __FLT_MIN__ ? am / 127.f : 0.f;
    const float id = db != 0.f ? 1.f / db : 0.f;
    __m512i sum = _mm512_setzero_si512();
    for (int v = 0; v < V; ++v) {
      __m512i iv = _mm512_cvtps_epi32(_mm512_mul_ps(x[v], _mm512_set1_ps(id)));  // nearest even
      iv = _mm512_min_epi32(_mm512_max_epi32(iv, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
      sum = _mm512_add_epi32(sum, iv);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + v * 16),
                       _mm512_cvtepi32_epi8(_mm512_add_epi32(iv, _mm512_set1_epi32(128))));
    }
    d[b] = db;
    s[b] = float(_mm512_reduce_add_epi32(sum));
  }
}

}  // namespace

void qgemm_quantize_row(const void* x, bool bf16, int64_t K, int G, int8_t* q, float* d, float* s) {
  if (G == 32)
    bf16 ? quantize_blocks<32, true>(x, K, q, d, s) : quantize_blocks<32, false>(x, K, q, d, s);
  else if (G == 16)
    bf16 ? quantize_blocks<16, true>(x, K, q, d, s) : quantize_blocks<16, false>(x, K, q, d, s);
  else
    qgemm_quantize_row_scalar(x, bf16, K, G, q, d, s, true);
}

void qgemm_pack_panel(const QPackJob& j) {
  if (j.row_bytes > size_t(INT32_MAX / 16)) return qgemm_pack_panel_scalar(j);  // lane offsets are int32
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(int(j.row_bytes)));
  const __mmask16 valid = __mmask16(j.rows >= 16 ? 0xFFFFu : (1u << j.rows) - 1);
  switch (j.f->pack) {
    case QFormat::Pack::Q8_0:
    case QFormat::Pack::Q4_0:
      return pack_d(j, idx, valid);
    case QFormat::Pack::Q4_K:
      return pack_q4_k(j, idx, valid);
    case QFormat::Pack::Q5_K:
    case QFormat::Pack::Q6_K:
    case QFormat::Pack::Generic:
      return j.L.G == 16 ? pack_generic<16>(j) : pack_generic<32>(j);
  }
}

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

#if !defined(__clang__)
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
