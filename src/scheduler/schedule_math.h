// Exact re-implementations of the two linspace functions the Z-Image schedule goes through.
#pragma once
#include <cstdint>
#include <vector>

namespace zimage::scheduler {

// torch.linspace(start, end, steps) with dtype float32 on CPU: start/end rounded to float,
// step = (end - start) / (steps - 1) in float, element i = fma(step, i, start) for i < steps/2
// and fma(-step, steps - 1 - i, end) for the rest (torch's kernel as GCC compiles it, with
// fused multiply-adds; verified bit for bit against torch 2.15 for steps 1..5000).
std::vector<float> torch_linspace_f32(double start, double end, int64_t steps);

// numpy.linspace(start, stop, num) in float64: i * ((stop - start) / (num - 1)) + start, the last
// element set to stop exactly.
std::vector<double> numpy_linspace_f64(double start, double stop, int64_t num);

}  // namespace zimage::scheduler
