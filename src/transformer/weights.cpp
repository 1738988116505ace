#include "transformer/weights.h"

#include "ops/ops.h"

namespace zimage::transformer {

Tensor WeightLoader::get(const std::string& name, const Shape& shape) const {
  if (!store_.has(name)) fail("[transformer] weights: ", store_.source(), ": missing tensor '", name, "'");
  try {
    return store_.get(name, shape);
  } catch (const Error& e) {
    fail("[transformer] ", e.what());
  }
}

Tensor WeightLoader::linear(const std::string& name, int64_t out, int64_t in) const {
  return ops::prepare_weight(get(name, {out, in}), compute_);
}

Tensor WeightLoader::f32(const std::string& name, const Shape& shape) const {
  return get(name, shape).to(DType::F32);
}

}  // namespace zimage::transformer
