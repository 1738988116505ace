// FinalLayer of transformer_z_image.py: LayerNorm (no affine, eps 1e-6) * (1 + Linear(SiLU(c))) -> Linear.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "ops/precision.h"
#include "transformer/weights.h"

namespace zimage::transformer {

class FinalLayer {
 public:
  FinalLayer() = default;
  FinalLayer(const WeightLoader& w, const std::string& prefix, int64_t hidden_size, int64_t out_channels,
             int64_t adaln_dim);
  // x: [T, hidden] (item b owns rows[b] rows), c: [B, adaln_dim].  Returns [T, out_channels].
  Tensor forward(ops::Precision p, const Tensor& x, const std::vector<int64_t>& rows, const Tensor& c) const;

 private:
  weights::LinearWeight linear_w_, adaln_w_;
  Tensor linear_b_, adaln_b_;
};

}  // namespace zimage::transformer
