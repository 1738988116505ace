// TimestepEmbedder of transformer_z_image.py: sinusoidal embedding (cos, sin) -> Linear -> SiLU -> Linear.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "ops/precision.h"
#include "transformer/weights.h"

namespace zimage::transformer {

class TimestepEmbedder {
 public:
  TimestepEmbedder() = default;
  TimestepEmbedder(const WeightLoader& w, const std::string& prefix, int64_t out_size, int64_t mid_size,
                   int64_t frequency_embedding_size);
  // t: already multiplied by t_scale.  Returns [B, out_size] f32.
  Tensor forward(ops::Precision p, const std::vector<float>& t) const;
  // timestep_embedding(t, dim): [B, dim] float32, cat([cos(t * freqs), sin(t * freqs)]).
  static Tensor timestep_embedding(const std::vector<float>& t, int64_t dim, double max_period = 10000.0);

 private:
  int64_t freq_dim_ = 256;
  weights::LinearWeight mlp0_w_, mlp2_w_;
  Tensor mlp0_b_, mlp2_b_;
};

}  // namespace zimage::transformer
