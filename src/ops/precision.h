// The precision policy of a model run (DESIGN.md "Precision"). Model code is written once, as
// diffusers' math, and hands its Precision to the ops; the ops decide where intermediates are
// rounded and whether a fused pass replaces a composition of plain ops.
#pragma once
#include "core/dtype.h"

namespace zimage::ops {

struct Precision {
  enum class Mode {
    F32,        // everything in float32 (a torch float32 run)
    TorchBF16,  // a torch bfloat16 run: bf16 GEMM inputs with f32 accumulation, and every tensor
                // torch materialises rounded to bf16 at the point torch stores it
  };
  Mode mode = Mode::F32;
  // TorchBF16: the block ops run their fused one-pass kernels (false: the plain composition of
  // ops they replace, bit for bit the same values; the reference of the block-level tests).
  bool fused = true;

  static Precision f32() { return {Mode::F32, true}; }
  static Precision torch_bf16(bool fused = true) { return {Mode::TorchBF16, fused}; }
  // The mode of a compute dtype: F32 -> f32(), BF16 -> torch_bf16(). Throws zimage::Error
  // ("[<component>] compute dtype must be float32 or bfloat16, got <dtype>") for any other.
  static Precision of(DType compute, const char* component);

  bool bf16() const { return mode == Mode::TorchBF16; }
  // The dtype torch holds activations in (F32 or BF16): the dtype of GEMM-input buffers.
  DType storage() const { return bf16() ? DType::BF16 : DType::F32; }
  // A scalar as a tensor of the run holds it.
  float store(float v) const { return bf16() ? round_bf16(v) : v; }
};

}  // namespace zimage::ops
