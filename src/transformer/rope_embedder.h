// RopeEmbedder of transformer_z_image.py: per-axis complex frequency tables, gathered by 3-axis
// position ids and concatenated along the head dimension. The tables are built per call, only up
// to the largest position the call uses (diffusers precomputes axes_lens rows per axis; the values
// are the same), so a config's axes_lens costs no memory.
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
  // freqs_[i][k] = 1 / theta^(2k / axes_dims[i]) in float64, as precompute_freqs_cis computes them.
  std::vector<std::vector<double>> freqs_;
};

}  // namespace zimage::transformer
