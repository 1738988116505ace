// The integer GEMM's tile kernels (qgemm.h), one per kernel level (internal to src/backend/cpu).
// qgemm.cpp packs the weights into panels of 16 rows (once per matrix) and quantizes the
// activations; a tile kernel computes an mr x (16 * np) block of results over the whole of K.
#pragma once
#include <cstdint>

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

struct QTile {
  int mr = 1, np = 1;         // 1..4 activation rows, 1..2 panels
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
  float* out = nullptr;  // [mr][32]: the sums (without bias)
};

// The result of one tile: for each row m < mr and lane n < 16 * np,
//   out[m * 32 + n] = sum_b xd[m][b] * (s[b][n] * idot + mn[b][n] * xs[m][b]),
// idot = the exact integer sum of q_w * q_x over block b (q_w as unpacked: stored value - off), the
// terms added in block order.
using QTileKernel = void (*)(const QTile&);

namespace portable {
void qgemm_tile(const QTile& t);
}  // namespace portable
namespace avx2 {
void qgemm_tile(const QTile& t);
}  // namespace avx2
namespace avx512 {
void qgemm_tile(const QTile& t);
}  // namespace avx512

}  // namespace zimage::cpu
