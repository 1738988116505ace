// RopeEmbedder of transformer_z_image.py: per-axis complex frequency tables, gathered by 3-axis
// position ids and concatenated along the head dimension.
#pragma once
#include <array>
#include <vector>

#include "core/tensor.h"

namespace zimage::transformer {

using PosId = std::array<int64_t, 3>;  // (frame/caption index, row, column)

class RopeEmbedder {
 public:
  RopeEmbedder(double theta, std::vector<int64_t> axes_dims, std::vector<int64_t> axes_lens);
  // [T, head_dim/2, 2] float32 (cos, sin) for each position id.
  Tensor operator()(const std::vector<PosId>& ids) const;
  int64_t head_dim() const { return head_dim_; }

 private:
  std::vector<int64_t> axes_dims_, axes_lens_;
  int64_t head_dim_ = 0;
  // tables_[i]: [axes_lens[i], axes_dims[i]/2, 2] (cos, sin), as precompute_freqs_cis builds them.
  std::vector<std::vector<float>> tables_;
};

}  // namespace zimage::transformer
