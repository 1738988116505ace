#include "transformer/timestep_embedder.h"

#include <cmath>

#include "ops/ops.h"

namespace zimage::transformer {

TimestepEmbedder::TimestepEmbedder(const WeightLoader& w, const std::string& prefix, int64_t out_size, int64_t mid_size,
                                   int64_t frequency_embedding_size)
    : freq_dim_(frequency_embedding_size) {
  mlp0_w_ = w.linear_weight(prefix + "mlp.0.weight", mid_size, frequency_embedding_size);
  mlp0_b_ = w.f32(prefix + "mlp.0.bias", {mid_size});
  mlp2_w_ = w.linear_weight(prefix + "mlp.2.weight", out_size, mid_size);
  mlp2_b_ = w.f32(prefix + "mlp.2.bias", {out_size});
}

Tensor TimestepEmbedder::timestep_embedding(const std::vector<float>& t, int64_t dim, double max_period) {
  const int64_t B = int64_t(t.size()), half = dim / 2;
  Tensor emb = Tensor::zeros(DType::F32, {B, dim});  // odd dim: last column stays zero
  // freqs = exp(-log(max_period) * arange(half, float32) / half), all in float32
  const float c = float(-std::log(max_period));
  std::vector<float> freqs(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) freqs[size_t(i)] = std::exp(c * float(i) / float(half));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < half; ++i) {
      const float arg = t[size_t(b)] * freqs[size_t(i)];
      emb.f32()[b * dim + i] = std::cos(arg);
      emb.f32()[b * dim + half + i] = std::sin(arg);
    }
  return emb;
}

Tensor TimestepEmbedder::forward(ops::Precision p, const std::vector<float>& t) const {
  Tensor x = timestep_embedding(t, freq_dim_).to(mlp0_b_.device());  // [B, 256], where the weights are
  ops::store_(p, x);                                                 // t_freq.to(weight_dtype)
  Tensor h = weights::linear(x, mlp0_w_, &mlp0_b_);
  ops::store_(p, h);
  ops::silu_(h);
  ops::store_(p, h);
  Tensor y = weights::linear(h, mlp2_w_, &mlp2_b_);
  ops::store_(p, y);
  return y;
}

}  // namespace zimage::transformer
