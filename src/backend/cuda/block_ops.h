// CUDA kernels with the storage semantics of the CPU ops (src/ops/ops.h): `bf` rounds each
// intermediate torch would materialise in bf16, as the CPU op with storage == BF16 does. Used by
// the op table (op_table.cpp); float32 activations unless noted.
#pragma once
#include <array>
#include <vector>

#include "backend/cuda/device_tensor.h"

namespace zimage::cuda {

// out = x converted (round-to-nearest-even), element counts equal; out may be a view (slice).
void convert_into(const DeviceTensor& x, DeviceTensor& out);
// f32 x = bf16(x) in place (no-op for bf16 / f16 storage).
void round_to_bf16_(DeviceTensor& x);
void silu_(DeviceTensor& x);                        // x = x * sigmoid(x)
void add_(DeviceTensor& x, const DeviceTensor& y);  // x += y
// y = st(x * scale[item]): ops::modulate.
DeviceTensor modulate(const DeviceTensor& x, const DeviceTensor& scale, const std::vector<int64_t>& rows, bool bf);
// x = st(x + (gate ? st(gate[item] * y) : y)), gate already tanh'd: ops::gate_add_.
void gate_add_prepared_(DeviceTensor& x, const DeviceTensor* gate, const DeviceTensor& y,
                        const std::vector<int64_t>& rows, bool bf);
// out = st(st(silu(a)) * b) (a, b rounded to bf16 as read when round_in): ops::silu_mul_as /
// silu_mul_bf16.
void silu_mul_into(const DeviceTensor& a, const DeviceTensor& b, DeviceTensor& out, bool bf, bool round_in);
// ops::adaln_chunks.
std::array<DeviceTensor, 4> adaln_chunks(const DeviceTensor& mod, bool bf);
// RMSNorm over the last dim: n = st(x * rsqrt(mean(x^2) + eps)), n = st(n * weight), out = n
// (or n * scale[item] when scale is given), stored as out's dtype; out may be x (in place).
void rms_norm_into(const DeviceTensor& x, const DeviceTensor* weight, float eps, bool bf, bool round_in,
                   const DeviceTensor* scale, const std::vector<int64_t>& rows, DeviceTensor& out);
// resid = st(resid + (gate ? st(gate[item] * n) : n)), n the RMSNorm of y as above.
void rms_norm_gate_add_(DeviceTensor& resid, const DeviceTensor* gate, const DeviceTensor& y,
                        const DeviceTensor* weight, float eps, bool bf, bool round_in,
                        const std::vector<int64_t>& rows);

}  // namespace zimage::cuda
