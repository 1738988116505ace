// Integer GEMM on ggml block-quantized weights (GGUF Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q3_K,
// Q2_K), as ggml computes them: the activations are quantized to int8 per block on the fly, the
// products are int8 dot products summed in int32, and each block's sum is scaled in float32.
//
// Every supported type is read as blocks of G weights (G = 32, or 16 for Q6_K/Q3_K/Q2_K whose
// scales are per 16) of the form w = s * q + mn: q an integer in [-128, 127], s the block's
// float32 scale and mn its float32 offset (0 but for Q4_K/Q5_K/Q2_K, which store mins). The
// activations x are quantized per G-block of a row: d = max|x| / 127, q = nearbyint(x * (1/d)),
// so x ~ d * q with |x - d * q| <= d / 2 (a block of only denormals counts as zeros). One float32
// scale per block, not ggml's fp16 one, and for the K-quants blocks of G instead of ggml's Q8_K
// blocks of 256: as cheap here (the weight scales are per G anyway), and closer.
// Then y[m, n] = sum over blocks of d * (s * sum(q_w * q_x) + mn * sum(q_x)) (+ bias), the block
// terms summed in float32 in block order (kernels.h's levels: AVX-512 VNNI, AVX2, plain loops).
// Only src/ops calls this; shapes are validated there.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/dtype.h"

namespace zimage::cpu {

// The ggml type has an integer path (the list above).
bool qgemm_supports(uint32_t ggml_type);
// The block size G of a supported type (32 or 16).
int qgemm_block(uint32_t ggml_type);

// W unpacked once into the tile kernels' layout (qgemm_kernels.h): panels of 16 rows, each with
// per block q[G * 16] int8 (4 bits a value for Q4_0 and Q4_K), s[16] float32, mn[16] float32
// (types with offsets only) and neg[16] int32: (1 + 8 / G) bytes per weight, + 4 / G with
// offsets, 0.5 less for 4-bit panels (Q8_0 1.25 against 1.0625 in the file, Q4_K 0.875 against
// 0.5625, Q4_0 0.75 against 0.5625, Q6_K 1.5 against 0.82). Independent of the kernel level.
// Made by qgemm_pack (in parallel), read by qgemm_nt_packed.
struct QPacked {
  uint32_t type = 0;
  int64_t N = 0, K = 0;
  int G = 32;
  int64_t nb = 0;  // blocks per row (K / G)
  bool asym = false;
  bool nib = false;  // 4-bit panels (Q4_0, Q4_K), values stored as q + off
  int off = 0;
  int64_t panel_bytes = 0, npanels = 0;
  std::unique_ptr<uint8_t[]> mem;  // npanels * panel_bytes (+ alignment)
  uint8_t* base = nullptr;         // 64-byte aligned start of panel 0
  size_t bytes() const { return size_t(npanels * panel_bytes); }
};

// Packs W [N, K] (`type`, `row_bytes` per row, K a multiple of the type's block).
std::unique_ptr<QPacked> qgemm_pack(int64_t N, int64_t K, const uint8_t* w, size_t row_bytes, uint32_t type);
// The bytes qgemm_pack allocates for W [N, K] of `type` (0 for a type without an integer path).
size_t qgemm_packed_bytes(int64_t N, int64_t K, uint32_t type);

// y[M, N] = x[M, K] . W[N, K]^T (+ bias[N] f32), W packed. x of dtype xt (F32 or BF16) with row
// stride ldx; y of dtype yt (F32, or BF16 rounded to nearest even) with row stride ldy.
void qgemm_nt_packed(int64_t M, const void* x, DType xt, int64_t ldx, const QPacked& w, const float* bias, void* y,
                     int64_t ldy, DType yt);

// The same on W in ggml type `type` as stored (packs it for this call: tests, one-off calls).
void qgemm_nt(int64_t M, int64_t N, int64_t K, const void* x, DType xt, int64_t ldx, const uint8_t* w, size_t row_bytes,
              uint32_t type, const float* bias, void* y, int64_t ldy, DType yt);

// One weight row (K elements of `type`) as its blocks: q[K] integers, s[K / G] scales and
// mn[K / G] offsets, with float(s * q) - (-mn) == gguf::dequantize_rows bit for bit (tests).
void qgemm_unpack_row(uint32_t type, const uint8_t* row, int64_t K, int8_t* q, float* s, float* mn);

}  // namespace zimage::cpu
