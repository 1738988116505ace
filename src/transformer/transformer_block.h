// ZImageTransformerBlock of transformer_z_image.py: RMSNorm -> attention -> RMSNorm -> residual,
// RMSNorm -> SwiGLU feed-forward (w1, w3, w2) -> RMSNorm -> residual; with adaLN modulation
// (scale_msa, gate_msa, scale_mlp, gate_mlp from the timestep embedding) when `modulation`.
#pragma once
#include <vector>

#include "core/safetensors.h"
#include "core/tensor.h"
#include "transformer/attention.h"
#include "transformer/config.h"
#include "transformer/weights.h"

namespace zimage::transformer {

class FeedForward {
 public:
  FeedForward() = default;
  FeedForward(const WeightLoader& w, const std::string& prefix, int64_t dim, int64_t hidden_dim);
  // buf.xb [T, dim] -> buf.proj [T, dim] f32 (the raw w2 GEMM result, stored by its reader).
  void forward(ops::Precision p, BlockBuffers::Views& buf) const;

 private:
  weights::LinearWeight w1_, w2_, w3_;
};

// The tensors of a ZImageTransformerBlock under `prefix` (diffusers' state dict names), appended to s.
void block_tensor_specs(std::vector<TensorSpec>& s, const std::string& prefix, const ZImageTransformerConfig& cfg,
                        bool modulation);

class ZImageTransformerBlock {
 public:
  ZImageTransformerBlock() = default;
  ZImageTransformerBlock(const WeightLoader& w, const std::string& prefix, const ZImageTransformerConfig& cfg,
                         bool modulation);
  // x: [T, dim] packed tokens (item b owns rows[b] rows); rope: [T, head_dim/2, 2];
  // adaln: [B, adaln_dim] (only with modulation).  Returns the new [T, dim] (x's storage, updated
  // in place).  buf: the activation buffers (shared by all blocks of a forward).
  Tensor forward(ops::Precision p, Tensor x, const std::vector<int64_t>& rows, const Tensor& rope, const Tensor& adaln,
                 BlockBuffers& buf) const;

 private:
  int64_t dim_ = 0, heads_ = 0, hidden_ = 0;
  float eps_ = 1e-5f;
  bool modulation_ = false;
  ZSingleStreamAttention attention_;
  FeedForward feed_forward_;
  Tensor attention_norm1_, ffn_norm1_, attention_norm2_, ffn_norm2_;
  weights::LinearWeight adaln_w_;
  Tensor adaln_b_;  // adaLN_modulation.0: Linear(adaln_dim, 4 * dim)
};

}  // namespace zimage::transformer
