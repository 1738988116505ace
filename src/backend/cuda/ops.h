// Ops of the CUDA backend on DeviceTensors, mirroring src/ops/ops.h. Activations may be float32
// or bfloat16 (float16 is accepted where noted); every kernel loads its inputs, computes in
// float32 and rounds once when it stores. All work is queued on the backend's stream
// (context.h); results are ready after download() or synchronize().
//
// "rows" groups the rows of a token tensor by batch item, as in the CPU ops: item b owns
// rows[b] consecutive rows (sum(rows) == x.dim(0)); at most kMaxItems items.
#pragma once
#include <vector>

#include "backend/cuda/device_tensor.h"

namespace zimage::cuda {

constexpr int kMaxItems = 16;

// Device-side dtype conversion (round-to-nearest-even to bf16/f16).
DeviceTensor convert(const DeviceTensor& x, DType to);

// y[..., N] = x[..., K] · w[N, K]^T (+ bias[N]) through cuBLASLt with float32 accumulation.
// x and w both bf16 (y bf16 or f32) or both f32 (y f32, true fp32 arithmetic, no TF32).
// bias: f32 or the dtype of y.
DeviceTensor linear(const DeviceTensor& x, const DeviceTensor& w, const DeviceTensor* bias, DType out);

// RMSNorm over the last dim: y = x * rsqrt(mean(x^2) + eps) * weight (weight optional, [dim]),
// then, when `scale` is given ([items, dim], raw adaLN output), y *= (1 + scale[item]).
DeviceTensor rms_norm(const DeviceTensor& x, const DeviceTensor* weight, float eps, const DeviceTensor* scale = nullptr,
                      const std::vector<int64_t>& rows = {});
// LayerNorm over the last dim without affine parameters (norm_final), then the same optional
// (1 + scale[item]) modulation.
DeviceTensor layer_norm(const DeviceTensor& x, float eps, const DeviceTensor* scale = nullptr,
                        const std::vector<int64_t>& rows = {});
// Residual update x[T, N] += tanh(gate[item]) * y, gate raw ([items, N]); gate null: x += y.
void gate_add_(DeviceTensor& x, const DeviceTensor* gate, const DeviceTensor& y, const std::vector<int64_t>& rows);
// SwiGLU: silu(a) * b, same shapes.
DeviceTensor silu_mul(const DeviceTensor& a, const DeviceTensor& b);
// Z-Image rotary embedding on interleaved pairs (complex product); x [T, H, D] in place,
// cs [T, D/2, 2] f32 (cos, sin).
void rope_interleaved_(DeviceTensor& x, const DeviceTensor& cs);
// Qwen3 rotary embedding, rotate-half convention; x [S, H, D] or [B, S, H, D] in place,
// cos/sin [S, D] f32.
void rope_rotate_half_(DeviceTensor& x, const DeviceTensor& cos, const DeviceTensor& sin);

// Patch layout of transformer/patchify.h: image [C, F, H, W] <-> tokens
// [(F/pF)(H/pH)(W/pW), pF*pH*pW*C], "c (f pf) (h ph) (w pw) -> (f h w) (pf ph pw c)".
struct PatchDims {
  int64_t C = 0, F = 0, H = 0, W = 0;
  int64_t pF = 1, pH = 2, pW = 2;
};
DeviceTensor patchify(const DeviceTensor& image, const PatchDims& p, DType out);
DeviceTensor unpatchify(const DeviceTensor& tokens, const PatchDims& p, DType out);

// Sinusoidal timestep embedding [B, dim]: cat(cos(t * f), sin(t * f)),
// f_i = exp(-ln(max_period) * i / (dim / 2)), computed in float32 as TimestepEmbedder does.
DeviceTensor timestep_embedding(const std::vector<float>& t, int64_t dim, double max_period = 10000.0);

// Scaled-dot-product attention. q [B, Sq, Hq, D], k/v [B, Sk, Hkv, D], Hq % Hkv == 0.
// key_valid[b]: keys >= key_valid[b] are masked for item b. causal: query i sees keys
// j <= i + (Sk - Sq). A query that sees no key gets zeros (as the CPU op). Result dtype = q's.
//   Flash:  bf16 q/k/v, D == 128; tensor cores (mma.sync), online softmax in f32.
//   Native: any float dtype and D <= 256; scores of one query materialised in shared memory.
//   Auto:   Flash when it applies, else Native.
enum class AttentionBackend { Auto, Flash, Native };
DeviceTensor attention(const DeviceTensor& q, const DeviceTensor& k, const DeviceTensor& v, float scale, bool causal,
                       const std::vector<int64_t>& key_valid = {}, AttentionBackend backend = AttentionBackend::Auto);

}  // namespace zimage::cuda
