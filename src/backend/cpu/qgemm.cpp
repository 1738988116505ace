// The integer GEMM on ggml block-quantized weights (qgemm.h): the weights unpacked once into
// panels of 16 rows (qgemm_pack), the activations quantized per block once per call, and the
// kernel table's tile kernel computes 4 x 32 results at a time (qgemm_kernels.h).
#include "backend/cpu/qgemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include <omp.h>

#include "backend/cpu/cpu_level.h"
#include "backend/cpu/qgemm_kernels.h"
#include "core/error.h"
#include "core/gguf.h"

namespace zimage::cpu {
namespace {

using gguf::GgmlType;

float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// ---- the block formats as s * q + mn (the expressions of core/gguf_dequant.cpp) ----

void scales_d(const uint8_t* b, float* s, float* mn) {  // Q8_0, Q4_0: d f16 first
  s[0] = f16(b);
  mn[0] = 0.f;
}
void unpack_q8_0(const uint8_t* b, int8_t* q, float* s, float* mn) {  // d f16, qs int8[32]
  scales_d(b, s, mn);
  std::memcpy(q, b + 2, 32);
}
void unpack_q4_0(const uint8_t* b, int8_t* q, float* s, float* mn) {  // d f16, qs[16]
  scales_d(b, s, mn);
  for (int j = 0; j < 16; ++j) {
    q[j] = int8_t(int(b[2 + j] & 0x0F) - 8);
    q[j + 16] = int8_t(int(b[2 + j] >> 4) - 8);
  }
}
void unpack_q5_0(const uint8_t* b, int8_t* q, float* s, float* mn) {  // d f16, qh u32, qs[16]
  s[0] = f16(b);
  mn[0] = 0.f;
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 32; ++j) {
    const int ql = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    q[j] = int8_t((ql | int((qh >> j) & 1u) << 4) - 16);
  }
}
void scale_min_k4(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 0x3F;
    mn[j] = s[4 + j] & 0x3F;
    sc[4 + j] = uint8_t((s[8 + j] & 0x0F) | ((s[j] >> 2) & 0x30));
    mn[4 + j] = uint8_t((s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30));
  }
}
void scales_q4_k(const uint8_t* b, float* s, float* mn) {  // d, dmin, scales[12]
  const float d = f16(b), dmin = f16(b + 2);
  uint8_t sc[8], m[8];
  scale_min_k4(b + 4, sc, m);
  for (int j = 0; j < 8; ++j) {
    s[j] = d * float(sc[j]);
    mn[j] = -(dmin * float(m[j]));
  }
}
void unpack_q4_k(const uint8_t* b, int8_t* q, float* s, float* mn) {  // d, dmin, scales[12], qs[128]
  scales_q4_k(b, s, mn);
  const uint8_t* qs = b + 16;
  for (int j = 0; j < 8; ++j)
    for (int l = 0; l < 32; ++l) q[j * 32 + l] = int8_t((qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F);
}
void unpack_q5_k(const uint8_t* b, int8_t* q, float* s, float* mn) {  // d, dmin, scales[12], qh[32], qs[128]
  scales_q4_k(b, s, mn);                                              // the same first 16 bytes
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l)
      q[j * 32 + l] = int8_t(((qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F) | (((qh[l] >> j) & 1) << 4));
  }
}
void scales_q6_k(const uint8_t* b, float* s, float* mn) {  // scales int8[16] at 192, d at 208
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16(b + 208);
  for (int i = 0; i < 16; ++i) {
    s[i] = d * float(sc[i]);
    mn[i] = 0.f;
  }
}
void unpack_q6_k(const uint8_t* b, int8_t* q, float* s, float* mn) {  // ql[128], qh[64], scales int8[16], d
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  scales_q6_k(b, s, mn);
  for (int pos = 0; pos < 256; ++pos) {
    const int g = pos / 128, r = pos % 128;
    const int lo = (ql[g * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
    const int hi = (qh[g * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
    q[pos] = int8_t(int(int8_t(uint8_t(lo | (hi << 4)))) - 32);
  }
}
void unpack_q3_k(const uint8_t* b, int8_t* q, float* s, float* mn) {  // hmask[32], qs[64], scales[12], d
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = f16(b + 108);
  for (int k = 0; k < 16; ++k) {
    const int lo = (sc[k % 8] >> (4 * (k / 8))) & 0x0F;
    const int hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 0x03;
    s[k] = d * float(int8_t(uint8_t(lo | (hi << 4))) - 32);
    mn[k] = 0.f;
  }
  for (int pos = 0; pos < 256; ++pos) {
    const int g = pos / 128, sh = (pos % 128) / 32, l = pos % 32;
    const int ql = (qs[g * 32 + l] >> (2 * sh)) & 3;
    const int qh = ((hmask[l] >> (pos / 32)) & 1) ^ 1;
    q[pos] = int8_t(ql - (qh << 2));
  }
}
void unpack_q2_k(const uint8_t* b, int8_t* q, float* s, float* mn) {  // scales[16], qs[64], d, dmin
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = f16(b + 80), dmin = f16(b + 82);
  for (int i = 0; i < 16; ++i) {
    s[i] = d * float(scales[i] & 0xF);
    mn[i] = -(dmin * float(scales[i] >> 4));
  }
  for (int pos = 0; pos < 256; ++pos) {
    const int g = pos / 128, sh = (pos % 128) / 32, l = pos % 32;
    q[pos] = int8_t((qs[g * 32 + l] >> (2 * sh)) & 3);
  }
}

using Format = QFormat;

const Format* format(uint32_t type) {
  static const Format q8_0{32, 32, 34, false, unpack_q8_0, false, 0, scales_d, Format::Pack::Q8_0},
      q4_0{32, 32, 18, false, unpack_q4_0, true, 8, scales_d, Format::Pack::Q4_0}, q5_0{32, 32, 22, false, unpack_q5_0},
      q4_k{32, 256, 144, true, unpack_q4_k, true, 0, scales_q4_k, Format::Pack::Q4_K},
      q5_k{32, 256, 176, true, unpack_q5_k, false, 0, scales_q4_k, Format::Pack::Q5_K},
      q6_k{16, 256, 210, false, unpack_q6_k, false, 0, scales_q6_k, Format::Pack::Q6_K},
      q3_k{16, 256, 110, false, unpack_q3_k}, q2_k{16, 256, 84, true, unpack_q2_k};
  switch (GgmlType(type)) {
    case GgmlType::Q8_0:
      return &q8_0;
    case GgmlType::Q4_0:
      return &q4_0;
    case GgmlType::Q5_0:
      return &q5_0;
    case GgmlType::Q4_K:
      return &q4_k;
    case GgmlType::Q5_K:
      return &q5_k;
    case GgmlType::Q6_K:
      return &q6_k;
    case GgmlType::Q3_K:
      return &q3_k;
    case GgmlType::Q2_K:
      return &q2_k;
    default:
      return nullptr;
  }
}

inline float to_f32(float v) { return v; }
inline float to_f32(uint16_t v) { return bf16_to_f32(v); }

// One activation row: blocks of G, d = max|x| / 127, q = nearbyint(x / d) (as x * (1 / d)), the
// block's sum of q; q + 128 as uint8 bits when u8. A block with a NaN or infinity gets d = NaN
// (the results it touches are NaN, as a float GEMM's would be); one whose max|x| is below FLT_MIN
// (only denormals) is all zeros.
template <class T>
void quantize_row(const T* x, int64_t K, int G, int8_t* q, float* d, float* s, bool u8) {
  for (int64_t b = 0; b * G < K; ++b) {
    const T* xb = x + b * G;
    float amax = 0.f;
    for (int k = 0; k < G; ++k) {
      const float a = std::fabs(to_f32(xb[k]));
      if (!(a <= amax)) amax = a;
      if (std::isnan(a)) break;  // (a later value would replace a NaN amax)
    }
    int8_t* qb = q + b * G;
    if (!std::isfinite(amax)) {
      d[b] = std::numeric_limits<float>::quiet_NaN();
      s[b] = 0.f;
      std::memset(qb, u8 ? 0x80 : 0, size_t(G));
      continue;
    }
    // below FLT_MIN (zeros, denormals: 1 / d would overflow) the block counts as zeros
    const float db = amax >= std::numeric_limits<float>::min() ? amax / 127.f : 0.f;
    const float id = db != 0.f ? 1.f / db : 0.f;
    int32_t sum = 0;
    for (int k = 0; k < G; ++k) {
      const int v = int(std::clamp(std::nearbyint(to_f32(xb[k]) * id), -127.f, 127.f));
      sum += v;
      qb[k] = u8 ? int8_t(uint8_t(v + 128)) : int8_t(v);
    }
    d[b] = db;
    s[b] = float(sum);
  }
}
// A row of K weights into q[K], s[K / G], mn[K / G].
void unpack_with(const Format& f, const uint8_t* row, int64_t K, int8_t* q, float* s, float* mn) {
  const int64_t per = f.super / f.G;  // (s, mn) blocks per stored block
  for (int64_t i = 0; i * f.super < K; ++i) f.unpack(row + i * f.bytes, q + i * f.super, s + i * per, mn + i * per);
}

constexpr int64_t kChunkBytes = 512 << 10;  // packed weights per work item (a thread's L2 holds it)

using PanelLayout = QPanelLayout;

QPanel view(const uint8_t* base, const PanelLayout& L) {
  QPanel p;
  p.q = reinterpret_cast<const int8_t*>(base);
  p.s = reinterpret_cast<const float*>(base + L.s_at());
  p.mn = L.asym ? reinterpret_cast<const float*>(base + L.mn_at()) : nullptr;
  p.neg = reinterpret_cast<const int32_t*>(base + L.neg_at());
  return p;
}

const Format& checked_format(uint32_t type, int64_t K) {
  const Format* f = format(type);
  if (!f || K % f->super != 0) fail("[qgemm] no integer path for ", gguf::type_name(type), " rows of ", K);
  return *f;
}

}  // namespace

const QFormat* qgemm_format(uint32_t type) { return format(type); }

// The reference packer: each row unpacked in plain loops, then scattered into the panel.
void qgemm_pack_panel_scalar(const QPackJob& j) {
  const Format& f = *j.f;
  const PanelLayout& L = j.L;
  const int64_t K = j.K;
  std::vector<int8_t> qv(static_cast<size_t>(K));
  std::vector<float> sv(static_cast<size_t>(L.nb)), mv(static_cast<size_t>(L.nb));
  int8_t* qrow = qv.data();
  float* srow = sv.data();
  float* mrow = mv.data();
  uint8_t* base = j.dst;
  int8_t* q = reinterpret_cast<int8_t*>(base);
  float* s = reinterpret_cast<float*>(base + L.s_at());
  float* mn = L.asym ? reinterpret_cast<float*>(base + L.mn_at()) : nullptr;
  int32_t* neg = reinterpret_cast<int32_t*>(base + L.neg_at());
  const int64_t G = L.G, NG = G / 4;
  for (int l = 0; l < 16; ++l) {
    const bool in = l < j.rows;
    if (in) {
      unpack_with(f, j.w + size_t(l) * j.row_bytes, K, qrow, srow, mrow);
    } else {
      std::memset(qrow, 0, size_t(K));
      std::fill(srow, srow + L.nb, 0.f);
      std::fill(mrow, mrow + L.nb, 0.f);
    }
    for (int64_t b = 0; b < L.nb; ++b) {
      const int8_t* src = qrow + b * G;
      int32_t sum = 0;
      if (L.nib) {  // stored u = q + off in [0, 15]: group g low, group g + NG / 2 high
        const int off = in ? f.off : 0;
        uint8_t* qb = reinterpret_cast<uint8_t*>(q) + b * G * 8 + l * 4;
        for (int64_t k = 0; k < G; ++k) sum += src[k] + off;
        for (int64_t g = 0; g < NG / 2; ++g)
          for (int i = 0; i < 4; ++i)
            qb[g * 64 + i] = uint8_t((src[g * 4 + i] + off) | (src[(g + NG / 2) * 4 + i] + off) << 4);
      } else {
        int8_t* qb = q + b * G * 16 + l * 4;
        for (int64_t k = 0; k < G; ++k) sum += src[k];
        for (int64_t g = 0; g < NG; ++g) std::memcpy(qb + g * 64, src + g * 4, 4);
      }
      s[b * 16 + l] = srow[b];
      if (mn) mn[b * 16 + l] = mrow[b];
      neg[b * 16 + l] = -128 * sum;
    }
  }
}

void qgemm_quantize_row_scalar(const void* x, bool bf16, int64_t K, int G, int8_t* q, float* d, float* s, bool u8) {
  if (bf16)
    quantize_row(static_cast<const uint16_t*>(x), K, G, q, d, s, u8);
  else
    quantize_row(static_cast<const float*>(x), K, G, q, d, s, u8);
}

namespace portable {
void qgemm_pack_panel(const QPackJob& j) { qgemm_pack_panel_scalar(j); }
void qgemm_quantize_row(const void* x, bool bf16, int64_t K, int G, int8_t* q, float* d, float* s) {
  qgemm_quantize_row_scalar(x, bf16, K, G, q, d, s, false);
}
}  // namespace portable

bool qgemm_supports(uint32_t type) { return format(type) != nullptr; }
int qgemm_block(uint32_t type) {
  const Format* f = format(type);
  return f ? f->G : 0;
}

void qgemm_unpack_row(uint32_t type, const uint8_t* row, int64_t K, int8_t* q, float* s, float* mn) {
  unpack_with(checked_format(type, K), row, K, q, s, mn);
}

size_t qgemm_packed_bytes(int64_t N, int64_t K, uint32_t type) {
  const Format* f = format(type);
  if (!f || K % f->super != 0 || N <= 0) return 0;
  return size_t((N + 15) / 16 * PanelLayout{K / f->G, f->G, f->asym, f->nib}.bytes());
}

std::unique_ptr<QPacked> qgemm_pack(int64_t N, int64_t K, const uint8_t* w, size_t row_bytes, uint32_t type) {
  const Format& f = checked_format(type, K);
  auto p = std::make_unique<QPacked>();
  p->type = type;
  p->N = std::max<int64_t>(N, 0);
  p->K = K;
  p->G = f.G;
  p->nb = K / f.G;
  p->asym = f.asym;
  const PanelLayout L{p->nb, f.G, f.asym, f.nib};
  p->nib = f.nib;
  p->off = f.off;
  p->panel_bytes = L.bytes();  // a multiple of 64: nb * 16 * (G + 8 or 12), G a multiple of 16
  p->npanels = (p->N + 15) / 16;
  p->mem.reset(new uint8_t[p->bytes() + 64]);
  p->base = p->mem.get() + (64 - reinterpret_cast<uintptr_t>(p->mem.get()) % 64) % 64;
  const int64_t np = p->npanels;
  const QPackKernel pack = kernels().qgemm_pack_panel;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < np; ++i) {
    QPackJob j;
    j.f = &f;
    j.L = L;
    j.w = w + size_t(i * 16) * row_bytes;
    j.row_bytes = row_bytes;
    j.rows = int(std::min<int64_t>(16, p->N - i * 16));
    j.K = K;
    j.dst = p->base + i * L.bytes();
    pack(j);
  }
  return p;
}

void qgemm_nt_packed(int64_t M, const void* x, DType xt, int64_t ldx, const QPacked& w, const float* bias, void* y,
                     int64_t ldy, DType yt) {
  const int64_t N = w.N, K = w.K;
  if (M <= 0 || N <= 0) return;
  const Kernels& kt = kernels();
  const int G = w.G;
  const int64_t nb = w.nb;
  std::unique_ptr<int8_t[]> xq(new int8_t[size_t(M * K)]);
  std::unique_ptr<float[]> xd(new float[size_t(M * nb)]), xs(new float[size_t(M * nb)]);
  // Work items: a chunk of weight panels (about kChunkBytes, kept in the thread's L2 while the
  // activation rows pass) x a range of activation rows. The only barrier is the one after the
  // activations are quantized (a shared, overloaded machine makes every barrier expensive). Rows
  // are split only when there are too few chunks to keep every thread busy.
  const PanelLayout L{nb, G, w.asym, w.nib};
  const int64_t npanels = w.npanels;
  const int64_t chunk = std::min(npanels, std::max<int64_t>(2, kChunkBytes / L.bytes()) / 2 * 2);
  const int64_t nchunks = (npanels + chunk - 1) / chunk;
  constexpr int R = kQTileMaxRows, P = 2;  // rows and panels per tile
  const int64_t mtiles = (M + R - 1) / R;
  const int64_t want = 2 * int64_t(omp_get_max_threads());
  const int64_t msplit = std::min(mtiles, std::max<int64_t>(1, (want + nchunks - 1) / nchunks));
  const int64_t tiles_per = (mtiles + msplit - 1) / msplit;
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int64_t m = 0; m < M; ++m)
      kt.qgemm_quantize_row(static_cast<const char*>(x) + size_t(m * ldx) * (xt == DType::BF16 ? 2 : 4),
                            xt == DType::BF16, K, G, xq.get() + m * K, xd.get() + m * nb, xs.get() + m * nb);
    const size_t ysz = yt == DType::BF16 ? 2 : 4;
#pragma omp for schedule(static)
    for (int64_t item = 0; item < nchunks * msplit; ++item) {
      const int64_t c = item / msplit, c0 = c * chunk, cp = std::min(chunk, npanels - c0), npairs = (cp + P - 1) / P;
      const int64_t t0 = item % msplit * tiles_per, t1 = std::min(mtiles, t0 + tiles_per);
      for (int64_t mt = t0; mt < t1; ++mt)
        for (int64_t pp = 0; pp < npairs; ++pp) {
          const int64_t m0 = mt * R, pi = c0 + pp * P;
          QTile tl;
          tl.mr = int(std::min<int64_t>(R, M - m0));
          tl.np = int(std::min<int64_t>(P, c0 + cp - pi));
          tl.G = G;
          tl.nib = w.nib;
          tl.off = w.off;
          tl.nb = nb;
          tl.x = xq.get() + m0 * K;
          tl.ldx = K;
          tl.xd = xd.get() + m0 * nb;
          tl.xs = xs.get() + m0 * nb;
          tl.ldxd = nb;
          for (int j = 0; j < tl.np; ++j) tl.p[j] = view(w.base + (pi + j) * L.bytes(), L);
          if (tl.np == 1) tl.p[1] = tl.p[0];
          const int64_t n0 = pi * 16;
          tl.y = static_cast<char*>(y) + size_t(m0 * ldy + n0) * ysz;
          tl.ldy = ldy;
          tl.y_bf16 = yt == DType::BF16;
          tl.bias = bias ? bias + n0 : nullptr;
          tl.nn = int(std::min<int64_t>(16 * tl.np, N - n0));
          kt.qgemm_tile(tl);
        }
    }
  }
}

void qgemm_nt(int64_t M, int64_t N, int64_t K, const void* x, DType xt, int64_t ldx, const uint8_t* w, size_t row_bytes,
              uint32_t type, const float* bias, void* y, int64_t ldy, DType yt) {
  checked_format(type, K);
  if (M <= 0 || N <= 0) return;
  const std::unique_ptr<QPacked> p = qgemm_pack(N, K, w, row_bytes, type);
  qgemm_nt_packed(M, x, xt, ldx, *p, bias, y, ldy, yt);
}

}  // namespace zimage::cpu
