// Attention with ZSingleStreamAttnProcessor (transformer_z_image.py): to_q/to_k/to_v without bias,
// per-head RMSNorm on q and k (eps 1e-5), interleaved complex RoPE, SDPA (scale 1/sqrt(head_dim)),
// to_out.0 without bias.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "transformer/weights.h"

namespace zimage::transformer {

class ZSingleStreamAttention {
 public:
  ZSingleStreamAttention() = default;
  ZSingleStreamAttention(const WeightLoader& w, const std::string& prefix, int64_t dim, int64_t heads, bool qk_norm);
  // x: [T, dim] packed tokens of the batch items (item b owns rows[b] consecutive rows; each item
  // attends only to its own tokens, i.e. diffusers' padded batch with a key-padding mask).
  // rope: [T, head_dim/2, 2].  Returns [T, dim].
  Tensor forward(const Tensor& x, const std::vector<int64_t>& rows, const Tensor& rope) const;

 private:
  DType storage_ = DType::F32;
  int64_t dim_ = 0, heads_ = 0, head_dim_ = 0;
  Tensor to_q_, to_k_, to_v_, to_out_, norm_q_, norm_k_;
};

}  // namespace zimage::transformer
