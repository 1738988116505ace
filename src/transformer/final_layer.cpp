#include "transformer/final_layer.h"

#include "ops/ops.h"

namespace zimage::transformer {

FinalLayer::FinalLayer(const WeightLoader& w, const std::string& prefix, int64_t hidden_size, int64_t out_channels,
                       int64_t adaln_dim) {
  linear_w_ = w.linear_weight(prefix + "linear.weight", out_channels, hidden_size);
  linear_b_ = w.f32(prefix + "linear.bias", {out_channels});
  adaln_w_ = w.linear_weight(prefix + "adaLN_modulation.1.weight", hidden_size, adaln_dim);
  adaln_b_ = w.f32(prefix + "adaLN_modulation.1.bias", {hidden_size});
}

Tensor FinalLayer::forward(ops::Precision p, const Tensor& x, const std::vector<int64_t>& rows, const Tensor& c) const {
  // scale = 1.0 + adaLN_modulation(c)  (SiLU -> Linear)
  Tensor s = c.clone();  // [B, adaln_dim]
  ops::silu_(s);
  ops::store_(p, s);
  // [B, hidden]; small: 1 + scale below runs on the host (no copy for CPU tensors).
  Tensor scale = weights::linear(s, adaln_w_, &adaln_b_).to(Device::CPU);
  ops::store_(p, scale);
  for (int64_t i = 0; i < scale.numel(); ++i) scale.f32()[i] = p.store(1.f + scale.f32()[i]);
  scale = scale.to(x.device());
  Tensor h = ops::layer_norm(x, Tensor(), Tensor(), 1e-6f);  // norm_final
  ops::store_(p, h);
  h = ops::modulate(p, h, scale, rows);
  Tensor y = weights::linear(h, linear_w_, &linear_b_);  // [T, out_channels]
  ops::store_(p, y);
  return y;
}

}  // namespace zimage::transformer
