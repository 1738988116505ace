// The linear op on a weight kept in a ggml block format (GGUF Q8_0, Q4_K, ...) or in
// float8_e4m3fn (safetensors F8_E4M3, with its scale): the matrix stays quantized where it lies
// (a memory mapping). Two ways to compute (QuantCompute):
// - dequant: the op dequantizes a tile of rows at a time into a small buffer and runs the same
//   GEMM as ops::linear on it (diffusers' GGUF path: dequantize, then the float GEMM); fp8 always
//   takes this path;
// - int: the integer GEMM of backend/cpu/qgemm.h (activations quantized to int8 per block, int8
//   dot products, per-block float scales), for Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q3_K, Q2_K.
// Never a dense copy of the matrix. The integer GEMM unpacks the matrix once, on its first use,
// into its kernels' layout (qgemm.h's QPacked: 1.25 bytes per weight for Q8_0 against 1.06 in the
// file, 0.875 for Q4_K against 0.56), kept with the matrix; then the pages of the file mapping it
// came from are released (madvise DONTNEED: a read-only file mapping rereads them if touched), so
// the resident size is the packed copy's, not both. Inside a TransientPacking scope a matrix with
// no packed copy kept is packed for one GEMM and the copy freed after it (the same kernels and
// values: the result is bit-identical), and its file pages are released after each use (the
// dequantizing path too): the pipeline's text encoder, and the transformer under --low-memory,
// then hold one weight's packed copy at a time instead of the whole model's.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace zimage::ops {

// auto: ZIMAGE_QUANT_COMPUTE=int|dequant when set, else int in a bfloat16 run (for the types the
// integer GEMM has) and dequant in a float32 run (the exact parity path).
enum class QuantCompute { Auto, Int, Dequant };

struct QuantPack;  // quantized.cpp: the integer GEMM's packed copy, made on first use
std::shared_ptr<QuantPack> new_quant_pack();

struct QuantizedMatrix {
  uint32_t ggml_type = 0;         // gguf::GgmlType, or fp8::kE4M3Type (core/fp8.h)
  int64_t rows = 0, cols = 0;     // [N, K]: rows of K elements, each a whole number of blocks
  const uint8_t* data = nullptr;  // rows * row_bytes bytes
  size_t row_bytes = 0;
  std::shared_ptr<const void> keepalive;  // the mapping `data` points into
  DType compute = DType::F32;             // the tiles go to the GEMM as float32 or (rounded) bfloat16
  QuantCompute mode = QuantCompute::Auto;
  std::vector<float> scale;  // fp8 only: empty, one value (per tensor) or `rows` (per row)
  // The integer GEMM's packed copy (made on first use; copies of the matrix share it).
  std::shared_ptr<QuantPack> pack = new_quant_pack();
};

// While alive, quantized linears on this thread pack transiently (on = true) or keep their packed
// copy (on = false, the default outside any scope). Scopes nest; the destructor restores the
// setting it found.
class TransientPacking {
 public:
  explicit TransientPacking(bool on = true);
  ~TransientPacking();
  TransientPacking(const TransientPacking&) = delete;
  TransientPacking& operator=(const TransientPacking&) = delete;
  static bool active();  // on this thread

 private:
  bool previous_;
};

// Bytes of every integer-GEMM packed copy alive in this process (kept ones and, during a GEMM, a
// transient one).
size_t live_packed_bytes();

// Bytes of the integer GEMM's packed copy of `w` (0 until its first integer linear).
size_t packed_bytes(const QuantizedMatrix& w);

// Whether ops::linear on `w` takes the integer GEMM (resolves Auto; an Error naming
// ZIMAGE_QUANT_COMPUTE's value when it is not int, dequant or empty).
bool uses_integer_gemm(const QuantizedMatrix& w);

// Rows of a tile: about kQuantTileBytes of dequantized float32 weights (a multiple of 16 rows).
// A matrix of one tile gives exactly the dense GEMM's result; with several tiles the GEMM may sum
// in another order (oneDNN picks its blocking by N).
constexpr int64_t kQuantTileBytes = 1 << 20;
int64_t quant_tile_rows(int64_t cols);

// As ops::linear / ops::linear_into with w = dequantize(w) (rounded to bf16 for a bf16 compute).
Tensor linear(const Tensor& x, const QuantizedMatrix& w, const Tensor* bias = nullptr);
void linear_into(const Tensor& x, const QuantizedMatrix& w, const Tensor* bias, Tensor& y);

}  // namespace zimage::ops
