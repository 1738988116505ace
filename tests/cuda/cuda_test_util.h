// Helpers of the CUDA backend tests: skip without a GPU, random host tensors (optionally holding
// bf16-representable values), and the tolerances of the brief: rel L2 <= 1e-4 for float32
// arithmetic, <= 2e-2 where bf16 storage rounds.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>

#include "backend/cuda/context.h"
#include "backend/cuda/device_tensor.h"
#include "core/tensor.h"

namespace zimage::cuda::test {

constexpr double kF32Tol = 1e-4;
constexpr double kBF16Tol = 2e-2;

#define ZI_REQUIRE_GPU()                                                \
  do {                                                                  \
    if (!::zimage::cuda::available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

// Uniform values in [lo, hi), deterministic per seed; bf16_values rounds them to bf16 so that a
// bf16 upload is exact and CPU and GPU see the same inputs.
Tensor random_tensor(Shape shape, uint64_t seed, float lo = -1.f, float hi = 1.f, bool bf16_values = false);

// Relative L2 error of a device result (downloaded as f32) against a host f32 reference.
double rel_err(const DeviceTensor& got, const Tensor& want);

// Tolerance for results stored as `dt`.
inline double tol_for(DType dt) { return dt == DType::F32 ? kF32Tol : kBF16Tol; }

}  // namespace zimage::cuda::test
