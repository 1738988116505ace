// diffusers.utils.torch_utils.randn_tensor for CPU generators.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "random/torch_generator.h"

namespace zimage::random {

// randn_tensor(shape, generator=g): the whole shape drawn at once from one generator.
Tensor randn_tensor(const Shape& shape, TorchGenerator& generator);

// randn_tensor(shape, generator=[g0, g1, ...]): a list of one generator is treated as that
// generator; otherwise batch item b (b < shape[0]) is drawn as randn([1, *shape[1:]]) from
// generators[b] and the items are concatenated along dimension 0.
Tensor randn_tensor(const Shape& shape, const std::vector<TorchGenerator*>& generators);

}  // namespace zimage::random
