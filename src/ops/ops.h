// Device-independent ops used by model code. Activations are float32 tensors; weights may be
// float32, bfloat16 or float16 as stored. An op runs where its first tensor argument lives: CPU
// tensors on the CPU backend (src/backend/cpu), other devices through their backend's op table
// (src/ops/backend.h; which ops a device has is listed there). Model code never names a device,
// an ISA or a library.
#pragma once
#include <array>
#include <vector>

#include "core/tensor.h"
#include "ops/precision.h"

namespace zimage::ops {

// Threads used by every op (OpenMP, shared with oneDNN). 0 = all cores.
void set_num_threads(int n);
int num_threads();

// The CPU kernel level the ops run at ("amx", "avx512", "avx2" or "portable"), chosen once: the
// best this CPU has, or ZIMAGE_CPU's (src/backend/cpu/cpu_level.h). Throws zimage::Error when
// ZIMAGE_CPU is unknown or names a level the CPU lacks; front ends call it before any work.
const char* cpu_kernel_level();

// Converts a weight once, at load, to what `linear` computes with for `compute`:
// bf16 compute keeps bf16 weights (f32/f16 weights are rounded to bf16); f32 compute
// gets f32 weights. Returns the same tensor (no copy) when nothing changes.
Tensor prepare_weight(const Tensor& w, DType compute);

// y[..., N] = x[..., K] · w[N, K]^T (+ bias[N]).  x f32, result f32.
// bf16 weights: x is rounded to bf16 and the product accumulates in f32 (AVX-512 BF16).
// f32 weights: exact f32 GEMM.  f16 weights: converted to f32 on the fly (slow path).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias = nullptr);
// The same into a preallocated y with y.numel() == rows(x) * N. x may also be bf16 (with bf16
// weights: used as is, no conversion pass); y f32, or bf16 with bf16 weights (rounded to nearest
// even; not always bit-identical to round_to_bf16_ of the f32 result: another summation order).
void linear_into(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);

// Scaled-dot-product attention with online softmax (the S×S score matrix is never stored).
// q: [B, Sq, Hq, D]; k, v: [B, Sk, Hkv, D] with Hq % Hkv == 0 (grouped-query attention).
// key_valid[b] (optional): keys at positions >= key_valid[b] are masked out for batch b.
// causal: query i attends to keys j <= i + (Sk - Sq).  Returns [B, Sq, Hq, D] f32.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                 const std::vector<int64_t>& key_valid = {});
// The same, computed as torch's CPU flash-attention kernel does for bfloat16 q/k/v, to emulate a
// bf16 torch run: q, k, v hold bf16 values; keys in blocks of 512 (online softmax across blocks);
// the probabilities are rounded to bf16 before the product with v; the result is rounded to bf16.
Tensor attention_torch_bf16(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                            const std::vector<int64_t>& key_valid = {});

// RMSNorm over the last dimension: x * rsqrt(mean(x^2) + eps) * weight.  x f32; weight any
// float dtype with numel == last dim, or undefined for no affine weight.
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
// LayerNorm over the last dimension (weight / bias may be undefined = no affine).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);

// Elementwise helpers (f32).
void silu_(Tensor& x);                              // x = x * sigmoid(x)
Tensor silu_mul(const Tensor& a, const Tensor& b);  // silu(a) * b  (SwiGLU)
void add_(Tensor& x, const Tensor& y);              // x += y (same shape)
void round_to_bf16_(Tensor& x);                     // emulate a bf16 tensor's storage

// Rotary position embedding, rotate-half convention (transformers' apply_rotary_pos_emb):
// x = x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2]).
// x: [S, H, D] or [B, S, H, D] f32, in place; cos, sin: [S, D] f32 (cat(freqs, freqs) layout).
// bf16_steps: round both products and the sum to bf16, as a bf16 torch run materialises them.
void rope_rotate_half_(Tensor& x, const Tensor& cos, const Tensor& sin, bool bf16_steps = false);

// Transformer-block helpers (Z-Image DiT). `storage` names the dtype torch holds the tensors in:
// F32 computes plainly; BF16 rounds every tensor torch would materialise to bf16 (intermediate by
// intermediate), so a bf16 reference run is reproduced closely.
// Rotary embedding on interleaved pairs as complex multiplication (x[2i] + i*x[2i+1]) * (cos + i*sin).
// x: [T, H, D] f32, in place; cs: [T, D/2, 2] f32 (cos, sin) per token and pair, shared by all heads.
void rope_interleaved_(Tensor& x, const Tensor& cs);
// Rows are grouped by item: item b owns rows[b] consecutive rows of x (sum(rows) == x.dim(0)).
// y = x * scale[item]              x: [T, N], scale: [B, N]
Tensor modulate(const Tensor& x, const Tensor& scale, const std::vector<int64_t>& rows, DType storage);
// x = x + gate[item] * y           (gate undefined: x = x + y)
void gate_add_(Tensor& x, const Tensor& gate, const Tensor& y, const std::vector<int64_t>& rows, DType storage);
// silu(a) * b, with the intermediate silu(a) stored as `storage`.
Tensor silu_mul_as(const Tensor& a, const Tensor& b, DType storage);  // bf16: vectorised exp (~1 ulp)
// RMSNorm as torch computes it for `storage` tensors (bf16: bf16(bf16(x * rsqrt(mean(x^2)+eps)) * w)).
Tensor rms_norm_as(const Tensor& x, const Tensor& weight, float eps, DType storage);

// adaLN chunk(4) of a block's modulation output mod [B, 4 * N] f32: {scale_msa = 1 + c0,
// gate_msa = tanh(c1), scale_mlp = 1 + c2, gate_mlp = tanh(c3)}, each [B, N] f32, each value
// rounded to bf16 when storage is BF16.
std::array<Tensor, 4> adaln_chunks(const Tensor& mod, DType storage);

// Fused passes of the bf16 DiT block (each equals the composition of the ops above with
// storage == BF16, bit for bit, in one pass over the data):
// out = modulate(rms_norm_as(x, weight), scale) as bf16 (the next GEMM's input). x: [T, N] f32 or
// bf16; weight: [N] or undefined; scale: [B, N] f32 or undefined; out: bf16 [T, N].
void rms_norm_modulate_bf16(const Tensor& x, const Tensor& weight, const Tensor& scale,
                            const std::vector<int64_t>& rows, float eps, Tensor& out);
// gate_add_(x, gate, rms_norm_as(bf16(y), weight), rows, BF16). x: [T, N] f32; y: [T, N] f32
// (rounded to bf16 as it is read: a raw GEMM result) or bf16.
void rms_norm_gate_add_bf16_(Tensor& x, const Tensor& gate, const Tensor& y, const Tensor& weight,
                             const std::vector<int64_t>& rows, float eps);
// Per head vector of x [T, H, D] f32 (a raw f32 projection): round to bf16, then (weight defined)
// rms_norm_as over D, then (cs defined, [T, D/2, 2]) rope_interleaved_ and round to bf16.
void head_norm_rope_bf16_(Tensor& x, const Tensor& weight, const Tensor& cs, float eps);
// out = silu_mul_as(bf16(a), bf16(b), BF16): a, b f32 (rounded to bf16 as read: raw GEMM results)
// or bf16; out bf16 with as many elements.
void silu_mul_bf16(const Tensor& a, const Tensor& b, Tensor& out);
// out = x rounded to bf16 (any float dtype in, bf16 out of the same element count), in parallel.
void to_bf16_into(const Tensor& x, Tensor& out);

// Ops of a precision (src/ops/precision.cpp): diffusers' math as the run's Precision holds it.
// Model code calls these and names no dtype; with p.bf16() && p.fused the block ops below run the
// fused passes above, else the plain composition of ops (the same bits; tests/transformer).
// t as torch stores it: rounded to bf16 values in TorchBF16 (t f32, in place); F32: unchanged.
void store_(Precision p, Tensor& t);
// x (any float dtype) as an f32 tensor holding the run's values: x itself when nothing changes.
Tensor stored(Precision p, const Tensor& x);
// out = x as stored (out: p.storage(), as many elements; F32 a copy).
void store_into(Precision p, const Tensor& x, Tensor& out);
Tensor rms_norm(Precision p, const Tensor& x, const Tensor& weight, float eps);
Tensor modulate(Precision p, const Tensor& x, const Tensor& scale, const std::vector<int64_t>& rows);
void gate_add_(Precision p, Tensor& x, const Tensor& gate, const Tensor& y, const std::vector<int64_t>& rows);
Tensor silu_mul(Precision p, const Tensor& a, const Tensor& b);
void rope_rotate_half_(Precision p, Tensor& x, const Tensor& cos, const Tensor& sin);
// TorchBF16: attention_torch_bf16 (q, k, v hold bf16 values); F32: attention.
Tensor attention(Precision p, const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                 const std::vector<int64_t>& key_valid = {});
// Block ops. out: a [T, N] tensor of p.storage() (the next GEMM's input).
// out = modulate(rms_norm(x, weight), scale)   (scale undefined: rms_norm only)
void rms_norm_modulate(Precision p, const Tensor& x, const Tensor& weight, const Tensor& scale,
                       const std::vector<int64_t>& rows, float eps, Tensor& out);
// x = x + gate * rms_norm(store(y), weight)   (gate undefined: no gate); y a raw f32 GEMM result.
void rms_norm_gate_add_(Precision p, Tensor& x, const Tensor& gate, const Tensor& y, const Tensor& weight,
                        const std::vector<int64_t>& rows, float eps);
// Per head vector of x [T, H, D] f32 (a raw projection): store, rms_norm over D (weight defined),
// rope_interleaved_ and store (cs defined).
void head_norm_rope_(Precision p, Tensor& x, const Tensor& weight, const Tensor& cs, float eps);
// out = silu(store(a)) * store(b), stored (a, b: raw f32 GEMM results).
void silu_mul_into(Precision p, const Tensor& a, const Tensor& b, Tensor& out);

}  // namespace zimage::ops

// Convolution-network ops (VAE). Tensors are NCHW float32.
namespace zimage::ops {
struct Padding2d {
  int64_t top = 0, bottom = 0, left = 0, right = 0;
  static Padding2d same(int64_t p) { return {p, p, p, p}; }
};
// Converts a conv weight once, at load, to what conv2d computes with for `compute` (as prepare_weight).
Tensor prepare_conv_weight(const Tensor& w, DType compute);
// y[B, O, OH, OW] = conv2d(x[B, C, H, W], w[O, C, kh, kw]) (+ bias[O]), zero padding, torch semantics.
// bf16 weights: x is rounded to bf16 and the products accumulate in f32; f32 weights: f32 conv.
// The backend chooses how it lays the tensors out in memory around its kernel (cpu::ConvLayout).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, int64_t stride, Padding2d pad);
// GroupNorm over [B, C, *] (statistics in double), then SiLU when fuse_silu. storage BF16 rounds
// the norm output (and the SiLU output) to bf16 as a bf16 torch run stores them.
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps,
                  bool fuse_silu = false, DType storage = DType::F32);
// Nearest-neighbour 2x upsampling (F.interpolate(scale_factor=2, mode="nearest")): [B, C, 2H, 2W].
Tensor upsample_nearest2x(const Tensor& x);
// group_norm with the run's storage.
Tensor group_norm(Precision p, const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps,
                  bool fuse_silu = false);
}  // namespace zimage::ops

// Reference implementations of the ops (plain loops, double arithmetic, f32 results; inputs of
// any float dtype are read as their values) for tests of the fast kernels at every CPU level
// (tests/backend/backend_ops_test.cpp) and of the model code. Same shapes as the ops above.
namespace zimage::ops::ref {
Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias = nullptr);
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                 const std::vector<int64_t>& key_valid = {});
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
Tensor silu_mul(const Tensor& a, const Tensor& b);
Tensor rope_rotate_half(const Tensor& x, const Tensor& cos, const Tensor& sin);
Tensor rope_interleaved(const Tensor& x, const Tensor& cs);
Tensor modulate(const Tensor& x, const Tensor& scale, const std::vector<int64_t>& rows);
Tensor gate_add(const Tensor& x, const Tensor& gate, const Tensor& y, const std::vector<int64_t>& rows);
// NCHW tensors.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, int64_t stride, Padding2d pad);
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps,
                  bool silu = false);
Tensor upsample_nearest2x(const Tensor& x);
}  // namespace zimage::ops::ref
