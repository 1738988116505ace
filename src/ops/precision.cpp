// The ops of a precision (ops.h, "Ops of a precision"): each is diffusers' math as the run's
// Precision holds it. F32 and unfused TorchBF16 are the plain composition of the ops; fused
// TorchBF16 runs the one-pass kernels of modulation.cpp, which give the same bits.
#include <cstring>

#include "ops/ops.h"

namespace zimage::ops {

Precision Precision::of(DType compute, const char* component) {
  if (compute == DType::F32) return f32();
  if (compute == DType::BF16) return torch_bf16();
  fail("[", component, "] compute dtype must be float32 or bfloat16, got ", dtype_name(compute));
}

namespace {

// out = x (same element count; f32 -> f32 copy, or to bf16).
void copy_into(const Tensor& x, Tensor& out) {
  if (out.dtype() == DType::BF16) return to_bf16_into(x, out);
  if (out.dtype() != DType::F32 || x.dtype() != DType::F32 || out.numel() != x.numel() || out.read_only())
    fail("[store] cannot store a ", dtype_name(x.dtype()), " ", shape_str(x.shape()), " tensor into a ",
         dtype_name(out.dtype()), " ", shape_str(out.shape()), " one");
  out.copy_from(x);  // device-aware; nothing when x is out
}

void check_out(const char* op, Precision p, const Tensor& out, int64_t numel) {
  if (out.dtype() != p.storage() || out.numel() != numel || out.read_only())
    fail("[", op, "] output must be a writable ", dtype_name(p.storage()), " tensor of ", numel, " elements, got ",
         dtype_name(out.dtype()), " ", shape_str(out.shape()));
}

}  // namespace

void store_(Precision p, Tensor& t) {
  if (p.bf16()) round_to_bf16_(t);
}

Tensor stored(Precision p, const Tensor& x) {
  Tensor t = x.dtype() == DType::F32 && p.bf16() ? x.clone() : x.to(DType::F32);
  store_(p, t);
  return t;
}

void store_into(Precision p, const Tensor& x, Tensor& out) {
  check_out("store", p, out, x.numel());
  copy_into(x, out);
}

Tensor rms_norm(Precision p, const Tensor& x, const Tensor& weight, float eps) {
  return rms_norm_as(x, weight, eps, p.storage());
}

Tensor modulate(Precision p, const Tensor& x, const Tensor& scale, const std::vector<int64_t>& rows) {
  return modulate(x, scale, rows, p.storage());
}

void gate_add_(Precision p, Tensor& x, const Tensor& gate, const Tensor& y, const std::vector<int64_t>& rows) {
  gate_add_(x, gate, y, rows, p.storage());
}

Tensor silu_mul(Precision p, const Tensor& a, const Tensor& b) { return silu_mul_as(a, b, p.storage()); }

void rope_rotate_half_(Precision p, Tensor& x, const Tensor& cos, const Tensor& sin) {
  rope_rotate_half_(x, cos, sin, p.bf16());
}

Tensor attention(Precision p, const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                 const std::vector<int64_t>& key_valid) {
  // bf16: torch's CPU flash kernel rounds the probabilities to bf16 before the product with v.
  return p.bf16() ? attention_torch_bf16(q, k, v, scale, causal, key_valid)
                  : attention(q, k, v, scale, causal, key_valid);
}

Tensor group_norm(Precision p, const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, float eps,
                  bool fuse_silu) {
  return group_norm(x, groups, weight, bias, eps, fuse_silu, p.storage());
}

void rms_norm_modulate(Precision p, const Tensor& x, const Tensor& weight, const Tensor& scale,
                       const std::vector<int64_t>& rows, float eps, Tensor& out) {
  check_out("rms_norm_modulate", p, out, x.numel());
  if (p.bf16() && p.fused) return rms_norm_modulate_bf16(x, weight, scale, rows, eps, out);
  Tensor n = rms_norm(p, x.to(DType::F32), weight, eps);
  if (scale.defined() && scale.numel() > 0) n = modulate(p, n, scale, rows);
  copy_into(n, out);
}

void rms_norm_gate_add_(Precision p, Tensor& x, const Tensor& gate, const Tensor& y, const Tensor& weight,
                        const std::vector<int64_t>& rows, float eps) {
  if (p.bf16() && p.fused) return rms_norm_gate_add_bf16_(x, gate, y, weight, rows, eps);
  gate_add_(p, x, gate, rms_norm(p, stored(p, y), weight, eps), rows);
}

void head_norm_rope_(Precision p, Tensor& x, const Tensor& weight, const Tensor& cs, float eps) {
  if (p.bf16() && p.fused) return head_norm_rope_bf16_(x, weight, cs, eps);
  if (x.ndim() != 3 || x.dtype() != DType::F32 || x.read_only())
    fail("[head_norm_rope] x must be a writable float32 [T, H, D] tensor, got ", dtype_name(x.dtype()), " ",
         shape_str(x.shape()));
  store_(p, x);
  if (weight.defined() && weight.numel() > 0) copy_into(rms_norm(p, x, weight, eps), x);
  if (cs.defined() && cs.numel() > 0) {
    rope_interleaved_(x, cs);  // apply_rotary_emb: float32 complex product, then type_as(x_in)
    store_(p, x);
  }
}

void silu_mul_into(Precision p, const Tensor& a, const Tensor& b, Tensor& out) {
  check_out("silu_mul", p, out, a.numel());
  if (p.bf16() && p.fused) return silu_mul_bf16(a, b, out);
  copy_into(silu_mul(p, stored(p, a), stored(p, b)), out);
}

}  // namespace zimage::ops
