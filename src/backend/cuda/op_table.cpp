// The op table (src/ops/backend.h) and memory functions of Device::CUDA: every entry unwraps its
// Tensors into DeviceTensors (no copy), checks they are on the GPU and runs the kernels of ops.h
// and block_ops.h with the CPU op's semantics (dtypes of results, storage roundings).
#include <mutex>

#include "backend/cuda/allocator.h"
#include "backend/cuda/backend.h"
#include "backend/cuda/block_ops.h"
#include "backend/cuda/context.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"
#include "core/device.h"
#include "ops/backend.h"

namespace zimage::cuda {

namespace {

// x as a DeviceTensor; an Error naming the op and argument when it is defined but not on CUDA.
DeviceTensor dev(const char* op, const char* name, const Tensor& t) {
  if (t.defined() && t.numel() > 0 && t.device() != Device::CUDA)
    fail("[ops] ", op, ": ", name, " is a ", device_name(t.device()),
         " tensor; all tensors of a cuda op must be on cuda");
  return DeviceTensor::of(t);
}
const DeviceTensor* opt(const DeviceTensor& t) { return t.defined() && t.numel() > 0 ? &t : nullptr; }
DeviceTensor f32(const DeviceTensor& t) { return t.dtype() == DType::F32 || !t.defined() ? t : convert(t, DType::F32); }
bool is_bf(const char* op, DType storage) {
  if (storage != DType::F32 && storage != DType::BF16)
    fail("[", op, "] storage must be float32 or bfloat16, got ", dtype_name(storage));
  return storage == DType::BF16;
}

// The GEMM of ops::linear: f32 weights an f32 GEMM, bf16 weights x rounded to bf16 and f32 accumulation.
DeviceTensor gemm(const char* op, const Tensor& x, const Tensor& w, const Tensor* bias, DType out) {
  const DeviceTensor dx = dev(op, "x", x), dw = dev(op, "weight", w);
  const DeviceTensor db = bias ? dev(op, "bias", *bias) : DeviceTensor();
  if (dw.dtype() != DType::F32 && dw.dtype() != DType::BF16)
    fail("[ops] ", op, ": ", dtype_name(dw.dtype()),
         " weights are not supported on cuda (prepare_weight gives float32 or bfloat16)");
  const DeviceTensor xx = dx.dtype() == dw.dtype() ? dx : convert(dx, dw.dtype());
  return linear(xx, dw, opt(db), out);
}

Tensor t_linear(const Tensor& x, const Tensor& w, const Tensor* bias) {
  return gemm("linear", x, w, bias, DType::F32).tensor();
}

void t_linear_into(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  DeviceTensor dy = dev("linear_into", "y", y);
  const DeviceTensor r = gemm("linear_into", x, w, bias, dy.dtype());
  if (r.numel() != dy.numel())
    fail("[ops] linear_into: result ", shape_str(r.shape()), " does not fit y ", shape_str(dy.shape()));
  if (r.nbytes())
    ZI_CUDA_CHECK(cudaMemcpyAsync(dy.data(), r.data(), r.nbytes(), cudaMemcpyDeviceToDevice, ctx().stream));
}

Tensor t_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                   const std::vector<int64_t>& key_valid) {
  return attention(dev("attention", "q", q), dev("attention", "k", k), dev("attention", "v", v), scale, causal,
                   key_valid)
      .tensor();
}

Tensor t_attention_torch_bf16(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                              const std::vector<int64_t>& key_valid) {
  auto bf = [](const DeviceTensor& t) { return t.dtype() == DType::BF16 ? t : convert(t, DType::BF16); };
  const DeviceTensor o = attention(bf(dev("attention", "q", q)), bf(dev("attention", "k", k)),
                                   bf(dev("attention", "v", v)), scale, causal, key_valid);
  return convert(o, DType::F32).tensor();  // the CPU op returns float32 holding bf16 values
}

Tensor t_rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  const DeviceTensor dx = dev("rms_norm", "x", x), w = f32(dev("rms_norm", "weight", weight));
  DeviceTensor out = DeviceTensor::empty(DType::F32, dx.shape());
  rms_norm_into(dx, opt(w), eps, false, false, nullptr, {}, out);
  return out.tensor();
}

Tensor t_layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  if ((weight.defined() && weight.numel()) || (bias.defined() && bias.numel()))
    fail("[ops] layer_norm with an affine weight or bias is not implemented for cuda tensors");
  return f32(layer_norm(f32(dev("layer_norm", "x", x)), eps)).tensor();
}

void t_silu_(Tensor& x) {
  DeviceTensor d = dev("silu", "x", x);
  silu_(d);
}
Tensor t_silu_mul(const Tensor& a, const Tensor& b) {
  return silu_mul(f32(dev("silu_mul", "a", a)), dev("silu_mul", "b", b)).tensor();
}
void t_add_(Tensor& x, const Tensor& y) {
  DeviceTensor d = dev("add", "x", x);
  add_(d, dev("add", "y", y));
}
void t_round_to_bf16_(Tensor& x) {
  DeviceTensor d = dev("round_to_bf16", "x", x);
  round_to_bf16_(d);
}
void t_rope_rotate_half_(Tensor& x, const Tensor& cos, const Tensor& sin, bool bf16_steps) {
  if (bf16_steps) fail("[ops] rope_rotate_half_ with bf16_steps is not implemented for cuda tensors");
  DeviceTensor d = dev("rope", "x", x);
  rope_rotate_half_(d, dev("rope", "cos", cos), dev("rope", "sin", sin));
}
void t_rope_interleaved_(Tensor& x, const Tensor& cs) {
  DeviceTensor d = dev("rope_interleaved", "x", x);
  rope_interleaved_(d, dev("rope_interleaved", "cs", cs));
}
Tensor t_modulate(const Tensor& x, const Tensor& scale, const std::vector<int64_t>& rows, DType storage) {
  return modulate(dev("modulate", "x", x), dev("modulate", "scale", scale), rows, is_bf("modulate", storage)).tensor();
}
void t_gate_add_(Tensor& x, const Tensor& gate, const Tensor& y, const std::vector<int64_t>& rows, DType storage) {
  DeviceTensor d = dev("gate_add", "x", x);
  const DeviceTensor g = dev("gate_add", "gate", gate);
  gate_add_prepared_(d, opt(g), dev("gate_add", "y", y), rows, is_bf("gate_add", storage));
}
Tensor t_silu_mul_as(const Tensor& a, const Tensor& b, DType storage) {
  const DeviceTensor da = dev("silu_mul", "a", a), db = dev("silu_mul", "b", b);
  DeviceTensor out = DeviceTensor::empty(DType::F32, da.shape());
  silu_mul_into(da, db, out, is_bf("silu_mul", storage), false);
  return out.tensor();
}
Tensor t_rms_norm_as(const Tensor& x, const Tensor& weight, float eps, DType storage) {
  const DeviceTensor dx = dev("rms_norm", "x", x), w = f32(dev("rms_norm", "weight", weight));
  DeviceTensor out = DeviceTensor::empty(DType::F32, dx.shape());
  rms_norm_into(dx, opt(w), eps, is_bf("rms_norm", storage), false, nullptr, {}, out);
  return out.tensor();
}
void t_rms_norm_modulate_bf16(const Tensor& x, const Tensor& weight, const Tensor& scale,
                              const std::vector<int64_t>& rows, float eps, Tensor& out) {
  const DeviceTensor dx = dev("rms_norm_modulate", "x", x), w = f32(dev("rms_norm_modulate", "weight", weight));
  const DeviceTensor s = dev("rms_norm_modulate", "scale", scale);
  DeviceTensor o = dev("rms_norm_modulate", "out", out);
  if (o.dtype() != DType::BF16 || o.shape() != dx.shape())
    fail("[rms_norm_modulate] output must be a bfloat16 ", shape_str(dx.shape()), " tensor");
  rms_norm_into(dx, opt(w), eps, true, false, opt(s), rows, o);
}
void t_rms_norm_gate_add_bf16_(Tensor& x, const Tensor& gate, const Tensor& y, const Tensor& weight,
                               const std::vector<int64_t>& rows, float eps) {
  DeviceTensor dx = dev("rms_norm_gate_add", "x", x);
  const DeviceTensor g = dev("rms_norm_gate_add", "gate", gate), w = f32(dev("rms_norm_gate_add", "weight", weight));
  rms_norm_gate_add_(dx, opt(g), dev("rms_norm_gate_add", "y", y), opt(w), eps, true, true, rows);
}
void t_head_norm_rope_bf16_(Tensor& x, const Tensor& weight, const Tensor& cs, float eps) {
  DeviceTensor dx = dev("head_norm_rope", "x", x);
  if (dx.ndim() != 3 || dx.dtype() != DType::F32)
    fail("[head_norm_rope] x must be a float32 [T, H, D] tensor, got ", dtype_name(dx.dtype()), " ",
         shape_str(dx.shape()));
  const DeviceTensor w = f32(dev("head_norm_rope", "weight", weight)), dcs = dev("head_norm_rope", "cs", cs);
  round_to_bf16_(dx);
  if (opt(w)) rms_norm_into(dx, &w, eps, true, false, nullptr, {}, dx);
  if (opt(dcs)) {
    rope_interleaved_(dx, dcs);
    round_to_bf16_(dx);
  }
}
void t_silu_mul_bf16(const Tensor& a, const Tensor& b, Tensor& out) {
  DeviceTensor o = dev("silu_mul_bf16", "out", out);
  silu_mul_into(dev("silu_mul_bf16", "a", a), dev("silu_mul_bf16", "b", b), o, true, true);
}
void t_to_bf16_into(const Tensor& x, Tensor& out) {
  DeviceTensor o = dev("to_bf16_into", "out", out);
  if (o.dtype() != DType::BF16) fail("[to_bf16_into] output must be bfloat16, got ", dtype_name(o.dtype()));
  convert_into(dev("to_bf16_into", "x", x), o);
}
std::array<Tensor, 4> t_adaln_chunks(const Tensor& mod, DType storage) {
  const auto c = adaln_chunks(dev("adaln_chunks", "mod", mod), is_bf("adaln_chunks", storage));
  return {c[0].tensor(), c[1].tensor(), c[2].tensor(), c[3].tensor()};
}

ops::OpTable make_table() {
  ops::OpTable t;
  t.linear = t_linear;
  t.linear_into = t_linear_into;
  t.attention = t_attention;
  t.attention_torch_bf16 = t_attention_torch_bf16;
  t.rms_norm = t_rms_norm;
  t.layer_norm = t_layer_norm;
  t.silu_ = t_silu_;
  t.silu_mul = t_silu_mul;
  t.add_ = t_add_;
  t.round_to_bf16_ = t_round_to_bf16_;
  t.rope_rotate_half_ = t_rope_rotate_half_;
  t.rope_interleaved_ = t_rope_interleaved_;
  t.modulate = t_modulate;
  t.gate_add_ = t_gate_add_;
  t.silu_mul_as = t_silu_mul_as;
  t.rms_norm_as = t_rms_norm_as;
  t.rms_norm_modulate_bf16 = t_rms_norm_modulate_bf16;
  t.rms_norm_gate_add_bf16_ = t_rms_norm_gate_add_bf16_;
  t.head_norm_rope_bf16_ = t_head_norm_rope_bf16_;
  t.silu_mul_bf16 = t_silu_mul_bf16;
  t.to_bf16_into = t_to_bf16_into;
  t.adaln_chunks = t_adaln_chunks;
  return t;
}

void* mem_allocate(size_t bytes) {
  ctx();  // the device must exist before the first allocation
  return CachingAllocator::instance().allocate(bytes, "cuda");
}
void mem_release(void* p, size_t bytes) { CachingAllocator::instance().release(p, bytes); }
void mem_copy(void* dst, Device dd, const void* src, Device sd, size_t n) {
  auto& c = ctx();
  // Unified addressing: the driver tells host from device memory.
  ZI_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, c.stream));
  // A host side (pageable memory, or a destination the caller reads next) waits for the copy.
  if (dd == Device::CPU || sd == Device::CPU) ZI_CUDA_CHECK(cudaStreamSynchronize(c.stream));
}
void mem_zero(void* p, size_t n) { ZI_CUDA_CHECK(cudaMemsetAsync(p, 0, n, ctx().stream)); }

}  // namespace

void register_backend() {
  static std::once_flag once;
  static ops::OpTable table;
  static DeviceBackend backend;
  std::call_once(once, [] {
    table = make_table();
    backend.name = "cuda";
    backend.allocate = mem_allocate;
    backend.release = mem_release;
    backend.copy = mem_copy;
    backend.zero = mem_zero;
    backend.ops = &table;
    register_device_backend(Device::CUDA, &backend);
  });
}

}  // namespace zimage::cuda
