#include "random/randn_tensor.h"

#include "core/error.h"

namespace zimage::random {

Tensor randn_tensor(const Shape& shape, TorchGenerator& generator) { return generator.randn(shape); }

Tensor randn_tensor(const Shape& shape, const std::vector<TorchGenerator*>& generators) {
  if (generators.empty()) fail("[random] randn_tensor: the generator list is empty");
  for (size_t i = 0; i < generators.size(); ++i)
    if (!generators[i]) fail("[random] randn_tensor: generator ", i, " is null");
  if (generators.size() == 1) return generators[0]->randn(shape);
  if (shape.empty()) fail("[random] randn_tensor: a generator list needs a batch dimension, got shape []");
  const int64_t batch = shape[0];
  if (batch < 0) fail("[random] randn_tensor: negative batch size in shape ", shape_str(shape));
  if (int64_t(generators.size()) < batch)
    fail("[random] randn_tensor: ", generators.size(), " generators for batch size ", batch, " (shape ",
         shape_str(shape), ")");
  Shape item = shape;
  item[0] = 1;  // [1, *shape[1:]]
  Tensor out = Tensor::empty(DType::F32, shape);
  const int64_t per_item = shape_numel(item);
  for (int64_t b = 0; b < batch; ++b) generators[size_t(b)]->randn_fill(out.f32() + b * per_item, per_item);
  return out;
}

}  // namespace zimage::random
