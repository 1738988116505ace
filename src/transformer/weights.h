// Loading of the transformer's weights by their diffusers names: every tensor is shape-checked,
// linear weights are prepared for the compute dtype, vectors (norms, biases, pad tokens) become f32.
#pragma once
#include <string>

#include "core/safetensors.h"
#include "core/tensor.h"

namespace zimage::transformer {

class WeightLoader {
 public:
  WeightLoader(const WeightStore& store, DType compute) : store_(store), compute_(compute) {}
  DType compute() const { return compute_; }
  bool has(const std::string& name) const { return store_.has(name); }
  // A linear layer's weight [out, in], in what ops::linear computes with.
  Tensor linear(const std::string& name, int64_t out, int64_t in) const;
  // Any other parameter, as float32.
  Tensor f32(const std::string& name, const Shape& shape) const;

 private:
  Tensor get(const std::string& name, const Shape& shape) const;
  const WeightStore& store_;
  DType compute_;
};

}  // namespace zimage::transformer
