// The integer GEMM's tile kernels and panel packers (qgemm.h), one per kernel level (internal to
// src/backend/cpu). qgemm.cpp quantizes the activations and has the level's packer fill the
// panels of 16 rows (once per matrix); a tile kernel computes an mr x (16 * np) block of results
// over the whole of K.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace zimage::cpu {

// 16 weight rows (lanes) x K, packed: for block b (of G) the values as q[b][G / 4][16][4] (lane
// l's 4 consecutive values of each group of 4 together, as vpdpbusd reads them), scales s[b][16],
// offsets mn[b][16] and neg[b][16] = -128 * the lane's sum of q over the block. 4-bit panels
// (QTile::nib: Q4_0, Q4_K; G = 32) hold two values a byte: q[b][4][16][4] with group g in the low
// nibbles and group g + 4 in the high ones, each value stored as q + off (0..15).
struct QPanel {
  const int8_t* q;
  const float* s;
  const float* mn;  // nullptr: all offsets are 0 (symmetric types)
  const int32_t* neg;
};

constexpr int kQTileMaxRows = 4;

struct QTile {
  int mr = 1, np = 1;         // 1..kQTileMaxRows activation rows, 1..2 panels
  int G = 32;                 // block size (16 or 32)
  bool nib = false;           // 4-bit panels (G = 32)
  int off = 0;                // the weights are stored as q + off (the sums subtract off * xs)
  int64_t nb = 0;             // blocks per row
  const int8_t* x = nullptr;  // quantized activations, row stride ldx; q + 128 as uint8 for an act_u8 level
  int64_t ldx = 0;
  const float* xd = nullptr;  // block scales d [row][nb]
  const float* xs = nullptr;  // block sums of q (exact integers, as float) [row][nb]
  int64_t ldxd = 0;
  QPanel p[2];
  // The results: y[m * ldy + n] for n < nn (<= 16 * np), float32 or (y_bf16) rounded to bf16
  // (nearest even, NaN -> 0x7fc0), + bias[n] (float32) when bias is not null.
  void* y = nullptr;
  int64_t ldy = 0;
  bool y_bf16 = false;
  const float* bias = nullptr;
  int nn = 0;
};

// The result of one tile: for each row m < mr and lane n < nn,
//   y[m][n] = sum_b xd[m][b] * (s[b][n] * idot + mn[b][n] * xs[m][b]) (+ bias[n]),
// idot = the exact integer sum of q_w * q_x over block b (q_w as unpacked: stored value - off), the
// terms added in block order.
using QTileKernel = void (*)(const QTile&);

// The sums out[m * 32 + n] (without bias) stored as QTile says (the plain-loop levels).
inline void qtile_store(const QTile& t, const float* out) {
  for (int m = 0; m < t.mr; ++m) {
    const float* o = out + m * 32;
    if (t.y_bf16) {
      uint16_t* yr = static_cast<uint16_t*>(t.y) + m * t.ldy;
      for (int n = 0; n < t.nn; ++n) yr[n] = f32_to_bf16(t.bias ? o[n] + t.bias[n] : o[n]);
    } else {
      float* yr = static_cast<float*>(t.y) + m * t.ldy;
      for (int n = 0; n < t.nn; ++n) yr[n] = t.bias ? o[n] + t.bias[n] : o[n];
    }
  }
}

// One activation row x[K] (float32, or bf16 bits when bf16) quantized as qgemm.h states: per
// block b of G, d[b] = max|x| / 127, q = nearbyint(x * (1 / d)) into q[b * G ...] (as q + 128 in
// uint8 bits at an act_u8 level), s[b] = the block's sum of q (an exact integer, as float); a block
// with a NaN or infinity: d = NaN, s = 0, q = 0; one below FLT_MIN: zeros.
using QQuantizeRow = void (*)(const void* x, bool bf16, int64_t K, int G, int8_t* q, float* d, float* s);
// The reference in plain loops (qgemm.cpp); u8: q + 128.
void qgemm_quantize_row_scalar(const void* x, bool bf16, int64_t K, int G, int8_t* q, float* d, float* s, bool u8);

// A supported ggml type's blocks (qgemm.cpp): blocks of G weights w = s * q + mn in stored blocks
// ("superblocks") of `super` weights and `bytes` bytes.
struct QFormat {
  int G;          // weights per (s, mn) block
  int64_t super;  // weights per stored ggml block
  int64_t bytes;  // bytes per stored ggml block
  bool asym;      // has offsets
  // One stored block into q[super], s[super / G], mn[super / G] (the reference unpacking).
  void (*unpack)(const uint8_t*, int8_t*, float*, float*);
  bool nib = false;  // 4-bit panels, values stored as q + off (Q4_0: q in [-8, 7], Q4_K: [0, 15])
  int off = 0;
  // Only s[super / G] and mn[super / G] of one stored block, as unpack has them (Q8_0, Q4_0,
  // Q4_K, Q5_K, Q6_K; nullptr for the others).
  void (*scales)(const uint8_t*, float*, float*) = nullptr;
  // The packers' special cases: Q8_0 (d, then 32 int8), Q4_0 (d, then 16 bytes: the panel's bytes
  // as they are), Q4_K; Q5_K and Q6_K (unpacked, then transposed, as Generic, the unpacking
  // vectorised where a level has it); Generic: unpack, then transpose.
  enum class Pack { Generic, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K } pack = Pack::Generic;
};
// nullptr for a type without an integer path.
const QFormat* qgemm_format(uint32_t ggml_type);

// The byte offsets of one panel's arrays (the layout above) for nb blocks of G.
struct QPanelLayout {
  int64_t nb = 0;
  int G = 32;
  bool asym = false, nib = false;
  int64_t q_bytes() const { return nb * G * (nib ? 8 : 16); }
  int64_t s_at() const { return q_bytes(); }
  int64_t mn_at() const { return q_bytes() + nb * 64; }  // asym only
  int64_t neg_at() const { return q_bytes() + nb * (asym ? 128 : 64); }
  int64_t bytes() const { return q_bytes() + nb * 16 * (asym ? 12 : 8); }  // a multiple of 64
};

// One panel to pack: rows [0, rows) of W from w (row stride row_bytes, K weights each of format
// f), rows [rows, 16) zeros (q = 0 even where off != 0, s = mn = 0, neg = 0), into dst (64-byte
// aligned, L.bytes() bytes).
struct QPackJob {
  const QFormat* f = nullptr;
  QPanelLayout L;
  const uint8_t* w = nullptr;
  size_t row_bytes = 0;
  int rows = 16;
  int64_t K = 0;
  uint8_t* dst = nullptr;
};
using QPackKernel = void (*)(const QPackJob&);
// Asks for bytes [at, at + len) of each of the job's rows (those within the row) to be loaded into
// the cache: a packer reads its 16 rows side by side, which the hardware prefetchers do not follow.
inline void qpack_prefetch(const QPackJob& j, int64_t at, int64_t len) {
  const int64_t row = j.K / j.f->super * j.f->bytes;
  for (int64_t o = at; o < at + len && o < row; o += 64)
    for (int l = 0; l < j.rows; ++l) __builtin_prefetch(j.w + size_t(l) * j.row_bytes + size_t(o));
}
// The reference packer in plain loops (qgemm.cpp): every level's packer writes the same bytes.
void qgemm_pack_panel_scalar(const QPackJob& j);

namespace portable {
void qgemm_tile(const QTile& t);
void qgemm_pack_panel(const QPackJob& j);  // qgemm_pack_panel_scalar
void qgemm_quantize_row(const void* x, bool bf16, int64_t K, int G, int8_t* q, float* d, float* s);  // the scalar one
}  // namespace portable
namespace avx2 {
void qgemm_tile(const QTile& t);
void qgemm_pack_panel(const QPackJob& j);
void qgemm_quantize_row(const void* x, bool bf16, int64_t K, int G, int8_t* q, float* d, float* s);  // the scalar one
}  // namespace avx2
namespace avx512 {
void qgemm_tile(const QTile& t);
void qgemm_pack_panel(const QPackJob& j);
void qgemm_quantize_row(const void* x, bool bf16, int64_t K, int G, int8_t* q, float* d, float* s);  // q + 128
}  // namespace avx512

}  // namespace zimage::cpu
