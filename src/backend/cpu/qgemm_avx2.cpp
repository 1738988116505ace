// The integer GEMM tile (qgemm_kernels.h) with AVX2 (the `avx2` level, signed activations): no
// VNNI, so vpmaddubsw on |q_w| (unsigned) and q_x with q_w's sign (signed): the pair sums stay
// within int16 (2 * 128 * 127 = 32512), then vpmaddwd by ones gives the int32 sum of each lane's 4.
#include <climits>
#include <cstdint>
#include <vector>

#include "backend/cpu/qgemm_kernels.h"

#if !defined(__clang__)  // GCC only: clang takes the ISA from CMakeLists.txt
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#include <immintrin.h>

namespace zimage::cpu::avx2 {
namespace {

// Rows [m0, m0 + MR) against the 16 lanes of panel p (two ymm of 8 lanes). NIB: 4-bit panels
// (unsigned values 0..15, two groups a byte): vpmaddubsw takes them as they are, the pair sums stay
// within 2 * 15 * 127; OFF: the weights are stored as q + t.off (idot takes off * xs).
template <int MR, int G, bool ASYM, bool NIB, bool OFF>
void half(const QTile& t, int m0, int j, float* out) {
  constexpr int NG = G / 4;
  constexpr int64_t QB = NIB ? G * 8 : G * 16;
  const QPanel& p = t.p[j];
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i lo4 = _mm256_set1_epi8(0x0F);
  __m256 acc[MR][2];
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < t.nb; ++b) {
    __m256i ia[MR][2];
    for (int m = 0; m < MR; ++m)
      ia[m][0] = ia[m][1] =
          OFF ? _mm256_set1_epi32(-t.off * int32_t(t.xs[(m0 + m) * t.ldxd + b])) : _mm256_setzero_si256();
    const int8_t* wq = p.q + b * QB;
    // unsigned weights u (NIB) or signed ones with s = sign: maddubs(|w|, sign(x, w))
    auto group = [&](__m256i u0, __m256i u1, __m256i s0, __m256i s1, bool sgn, int g) {
      for (int m = 0; m < MR; ++m) {
        int32_t xv;
        __builtin_memcpy(&xv, t.x + (m0 + m) * t.ldx + b * G + g * 4, 4);
        const __m256i xb = _mm256_set1_epi32(xv);
        const __m256i p0 = _mm256_maddubs_epi16(u0, sgn ? _mm256_sign_epi8(xb, s0) : xb);
        const __m256i p1 = _mm256_maddubs_epi16(u1, sgn ? _mm256_sign_epi8(xb, s1) : xb);
        ia[m][0] = _mm256_add_epi32(ia[m][0], _mm256_madd_epi16(p0, ones));
        ia[m][1] = _mm256_add_epi32(ia[m][1], _mm256_madd_epi16(p1, ones));
      }
    };
    if (NIB) {
      for (int g = 0; g < NG / 2; ++g) {
        const __m256i r0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + g * 64));
        const __m256i r1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + g * 64 + 32));
        group(_mm256_and_si256(r0, lo4), _mm256_and_si256(r1, lo4), r0, r1, false, g);
        group(_mm256_and_si256(_mm256_srli_epi16(r0, 4), lo4), _mm256_and_si256(_mm256_srli_epi16(r1, 4), lo4), r0, r1,
              false, g + NG / 2);
      }
    } else {
      for (int g = 0; g < NG; ++g) {
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + g * 64));
        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + g * 64 + 32));
        group(_mm256_abs_epi8(w0), _mm256_abs_epi8(w1), w0, w1, true, g);
      }
    }
    __m256 s[2], mn[2];
    for (int h = 0; h < 2; ++h) {
      s[h] = _mm256_loadu_ps(p.s + b * 16 + h * 8);
      if (ASYM) mn[h] = _mm256_loadu_ps(p.mn + b * 16 + h * 8);
    }
    for (int m = 0; m < MR; ++m) {
      const __m256 d = _mm256_set1_ps(t.xd[(m0 + m) * t.ldxd + b]);
      __m256 xs;
      if (ASYM) xs = _mm256_set1_ps(t.xs[(m0 + m) * t.ldxd + b]);
      for (int h = 0; h < 2; ++h) {
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(ia[m][h]), s[h]);
        if (ASYM) v = _mm256_fmadd_ps(mn[h], xs, v);
        acc[m][h] = _mm256_fmadd_ps(v, d, acc[m][h]);
      }
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int h = 0; h < 2; ++h) _mm256_storeu_ps(out + (m0 + m) * 32 + j * 16 + h * 8, acc[m][h]);
}

template <int G, bool ASYM, bool NIB = false, bool OFF = false>
void run(const QTile& t) {
  alignas(32) float out[kQTileMaxRows * 32];
  for (int j = 0; j < t.np; ++j) {
    int m = 0;
    for (; m + 2 <= t.mr; m += 2) half<2, G, ASYM, NIB, OFF>(t, m, j, out);
    if (m < t.mr) half<1, G, ASYM, NIB, OFF>(t, m, j, out);
  }
  qtile_store(t, out);
}

// ---- the panel packer (qgemm_kernels.h): the bytes of qgemm_pack_panel_scalar, 8 rows (lanes
// 8h .. 8h + 7) at a time: a gather of 4 bytes per row makes half of one 64-byte group of the
// panel, vpmaddubsw and vpmaddwd by ones sum it. Scales and offsets in plain loops
// (QFormat::scales or unpack), one call per row and stored block.

inline __m256i gather(const void* p, __m256i idx, __m256i valid) {
  return _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), static_cast<const int*>(p), idx, valid, 1);
}
inline __m256i sum4(__m256i acc, __m256i v) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v), _mm256_set1_epi16(1)));
}
inline void store_neg(int32_t* neg, __m256i sum) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(neg), _mm256_mullo_epi32(sum, _mm256_set1_epi32(-128)));
}
inline void store(int8_t* p, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }

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

// s[b0 + b][l], mn[b0 + b][l] from ss[l][b], mm[l][b] (rows past j.rows: zeros).
void put_scales(const QPackJob& j, const PanelOut& o, int64_t b0, int per, const float* ss, const float* mm) {
  for (int b = 0; b < per; ++b)
    for (int l = 0; l < 16; ++l) {
      o.s[(b0 + b) * 16 + l] = l < j.rows ? ss[l * per + b] : 0.f;
      if (o.mn) o.mn[(b0 + b) * 16 + l] = l < j.rows ? mm[l * per + b] : 0.f;
    }
}

// Q8_0, Q4_0 (the 4-bit panel's bytes are the stored ones) and Q4_K (sub-blocks 2p and 2p + 1 are
// the low and high nibbles of qs[32p, 32p + 32); the panel byte of group g < 4 pairs value g * 4 + i
// with 16 + g * 4 + i).
void pack_direct(const QPackJob& j) {
  const PanelOut o(j);
  const QFormat& f = *j.f;
  const int per = int(f.super / f.G);
  const __m256i lo4 = _mm256_set1_epi8(0x0F);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i idx = _mm256_mullo_epi32(lane, _mm256_set1_epi32(int(j.row_bytes)));
  alignas(32) float ss[16 * 8], mm[16 * 8];
  for (int64_t i = 0; i < j.K / f.super; ++i) {
    const uint8_t* sb = j.w + i * f.bytes;
    qpack_prefetch(j, (i + (f.super == 32 ? 16 : 4)) * f.bytes, f.super == 32 ? 1 : f.bytes);
    for (int l = 0; l < j.rows; ++l) f.scales(sb + size_t(l) * j.row_bytes, ss + l * per, mm + l * per);
    put_scales(j, o, i * per, per, ss, mm);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* hb = sb + size_t(8 * h) * j.row_bytes;
      const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(j.rows - 8 * h), lane);
      if (f.pack == QFormat::Pack::Q8_0) {
        __m256i sum = _mm256_setzero_si256();
        for (int g = 0; g < 8; ++g) {
          const __m256i v = gather(hb + 2 + g * 4, idx, valid);
          store(o.q + i * 512 + g * 64 + h * 32, v);
          sum = sum4(sum, v);
        }
        store_neg(o.neg + i * 16 + h * 8, sum);
      } else if (f.pack == QFormat::Pack::Q4_0) {
        __m256i sum = _mm256_setzero_si256();
        for (int g = 0; g < 4; ++g) {
          const __m256i v = gather(hb + 2 + g * 4, idx, valid);
          store(o.q + i * 256 + g * 64 + h * 32, v);
          sum = sum4(sum4(sum, _mm256_and_si256(v, lo4)), _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4));
        }
        store_neg(o.neg + i * 16 + h * 8, sum);
      } else {  // Q4_K
        for (int p = 0; p < 4; ++p) {
          const uint8_t* qs = hb + 16 + p * 32;
          int8_t* qe = o.q + (i * 8 + 2 * p) * 256 + h * 32;
          __m256i se = _mm256_setzero_si256(), so = _mm256_setzero_si256();
          for (int g = 0; g < 4; ++g) {
            const __m256i a = gather(qs + g * 4, idx, valid), c = gather(qs + 16 + g * 4, idx, valid);
            const __m256i alo = _mm256_and_si256(a, lo4), ahi = _mm256_and_si256(_mm256_srli_epi16(a, 4), lo4);
            const __m256i clo = _mm256_and_si256(c, lo4), chi = _mm256_and_si256(_mm256_srli_epi16(c, 4), lo4);
            store(qe + g * 64, _mm256_or_si256(alo, _mm256_slli_epi16(clo, 4)));
            store(qe + 256 + g * 64, _mm256_or_si256(ahi, _mm256_slli_epi16(chi, 4)));
            se = sum4(sum4(se, alo), clo);
            so = sum4(sum4(so, ahi), chi);
          }
          store_neg(o.neg + (i * 8 + 2 * p) * 16 + h * 8, se);
          store_neg(o.neg + (i * 8 + 2 * p + 1) * 16 + h * 8, so);
        }
      }
    }
  }
}

// The other types: the 16 rows' stored blocks unpacked in plain loops (QFormat::unpack), their
// values transposed into the panel.
void pack_generic(const QPackJob& j) {
  const PanelOut o(j);
  const QFormat& f = *j.f;
  const int G = f.G;
  const int64_t S = f.super;
  const int per = int(S / G);
  std::vector<int8_t> qv(size_t(16 * S), 0);
  std::vector<float> sv(size_t(16 * per), 0.f), mv(size_t(16 * per), 0.f);
  const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int(S)));
  const __m256i all = _mm256_set1_epi32(-1);
  for (int64_t i = 0; i < j.K / S; ++i) {
    qpack_prefetch(j, (i + 4) * f.bytes, f.bytes);
    for (int l = 0; l < j.rows; ++l)
      f.unpack(j.w + size_t(l) * j.row_bytes + i * f.bytes, qv.data() + l * S, sv.data() + l * per,
               mv.data() + l * per);
    put_scales(j, o, i * per, per, sv.data(), mv.data());
    for (int b = 0; b < per; ++b) {
      const int64_t gb = i * per + b;
      for (int h = 0; h < 2; ++h) {
        __m256i sum = _mm256_setzero_si256();
        for (int g = 0; g < G / 4; ++g) {
          const __m256i v = gather(qv.data() + 8 * h * S + b * G + g * 4, idx, all);
          store(o.q + gb * G * 16 + g * 64 + h * 32, v);
          sum = sum4(sum, v);
        }
        store_neg(o.neg + gb * 16 + h * 8, sum);
      }
    }
  }
}

}  // namespace

void qgemm_quantize_row(const void* x, bool bf16, int64_t K, int G, int8_t* q, float* d, float* s) {
  qgemm_quantize_row_scalar(x, bf16, K, G, q, d, s, false);
}

void qgemm_pack_panel(const QPackJob& j) {
  if (j.row_bytes > size_t(INT32_MAX / 16)) return qgemm_pack_panel_scalar(j);  // lane offsets are int32
  const QFormat::Pack k = j.f->pack;
  if (k == QFormat::Pack::Q8_0 || k == QFormat::Pack::Q4_0 || k == QFormat::Pack::Q4_K)
    pack_direct(j);
  else
    pack_generic(j);
}

void qgemm_tile(const QTile& t) {
  const bool asym = t.p[0].mn != nullptr;
  if (t.nib)  // Q4_K (offsets, no shift) or Q4_0 (q + 8)
    asym ? run<32, true, true, false>(t) : run<32, false, true, true>(t);
  else if (t.G == 32)
    asym ? run<32, true>(t) : run<32, false>(t);
  else
    asym ? run<16, true>(t) : run<16, false>(t);
}

}  // namespace zimage::cpu::avx2

#if !defined(__clang__)
#pragma GCC pop_options
#endif
