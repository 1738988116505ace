// The transformer reads its weights through the single weight loader (src/weights/loader.h):
// every tensor shape-checked, linear weights prepared for the compute dtype, vectors (norms,
// biases, pad tokens) as f32.
#pragma once
#include "weights/loader.h"

namespace zimage::transformer {
using WeightLoader = weights::Loader;
}  // namespace zimage::transformer
