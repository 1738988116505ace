#include "weights/loader.h"

#include "ops/ops.h"

namespace zimage::weights {

Tensor Loader::stored(const std::string& name, const Shape& shape) const {
  return with_component(component_.c_str(), [&] { return store_.get(name, shape); });
}

Tensor Loader::linear(const std::string& name, int64_t out, int64_t in) const {
  return ops::prepare_weight(stored(name, {out, in}), compute_);
}

Tensor Loader::conv(const std::string& name, const Shape& shape) const {
  return ops::prepare_conv_weight(stored(name, shape), compute_);
}

Tensor Loader::f32(const std::string& name, const Shape& shape) const {
  return stored(name, shape).to(DType::F32);
}

Tensor Loader::param(const std::string& name, const Shape& shape) const {
  Tensor t = stored(name, shape);
  if (compute_ == DType::BF16) return t.to(DType::BF16).to(DType::F32);
  return t.to(DType::F32).clone();
}

}  // namespace zimage::weights
