// The Z-Image transformer block (transformer/transformer_block.cpp) composed from CUDA ops on
// device tensors: the "stage" the parity tests compare against the CPU block, and the unit the
// benchmark times at full size. Activations are stored in the compute dtype (bf16 or f32); see
// docs/cuda.md for how model code is meant to reach this (ops dispatch on device tensors).
#pragma once
#include <string>
#include <vector>

#include "backend/cuda/device_tensor.h"
#include "core/safetensors.h"

namespace zimage::cuda {

struct DitBlockDims {
  int64_t dim = 0, heads = 0, hidden = 0, adaln_dim = 0;
  float eps = 1e-5f;
  bool modulation = true;
};

class DitBlock {
 public:
  DitBlock() = default;
  // Reads "<prefix>attention.to_q.weight", ... from `store`; linear weights become `compute`,
  // norm weights and biases float32.
  DitBlock(const WeightStore& store, const std::string& prefix, const DitBlockDims& d, DType compute);
  // Random weights of the given size (benchmarks), scaled like a trained layer (1/sqrt(fan_in)).
  static DitBlock random(const DitBlockDims& d, DType compute, uint64_t seed);

  // x [T, dim] (item b owns rows[b] rows), rope [T, head_dim/2, 2] f32, adaln [B, adaln_dim]
  // (modulation only). Returns the new x, in the compute dtype.
  DeviceTensor forward(const DeviceTensor& x, const std::vector<int64_t>& rows, const DeviceTensor& rope,
                       const DeviceTensor& adaln) const;

 private:
  DeviceTensor attention(const DeviceTensor& xn, const std::vector<int64_t>& rows, const DeviceTensor& rope) const;

  DitBlockDims d_;
  DType compute_ = DType::BF16;
  DeviceTensor to_q_, to_k_, to_v_, to_out_, norm_q_, norm_k_;
  DeviceTensor w1_, w2_, w3_;
  DeviceTensor attention_norm1_, ffn_norm1_, attention_norm2_, ffn_norm2_;
  // adaLN_modulation.0 split by output rows into its four chunks (scale_msa, gate_msa,
  // scale_mlp, gate_mlp), so each is one GEMM writing a contiguous [B, dim] tensor.
  DeviceTensor adaln_w_[4], adaln_b_[4];
};

}  // namespace zimage::cuda
