// The op table a device backend implements (src/backend/<name>), one entry per op of ops.h that
// model code calls on that device. Every op in ops.h that appears here starts with one device
// check on its first tensor argument: a CPU tensor runs the CPU code below it as before (no other
// cost), any other device goes to that device's table. A null entry means the backend lacks the
// op, which is an error naming the op and the device, as is a device without a backend. The
// backend checks that the other tensors are on its device; a CPU op handed a device tensor fails
// at its first host access ("[tensor] host access to a cuda tensor ...").
#pragma once
#include <array>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"

namespace zimage::ops {

struct OpTable {
  Tensor (*linear)(const Tensor& x, const Tensor& w, const Tensor* bias) = nullptr;
  void (*linear_into)(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = nullptr;
  Tensor (*attention)(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                      const std::vector<int64_t>& key_valid) = nullptr;
  Tensor (*attention_torch_bf16)(const Tensor& q, const Tensor& k, const Tensor& v, float scale, bool causal,
                                 const std::vector<int64_t>& key_valid) = nullptr;
  Tensor (*rms_norm)(const Tensor& x, const Tensor& weight, float eps) = nullptr;
  Tensor (*layer_norm)(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) = nullptr;
  void (*silu_)(Tensor& x) = nullptr;
  Tensor (*silu_mul)(const Tensor& a, const Tensor& b) = nullptr;
  void (*add_)(Tensor& x, const Tensor& y) = nullptr;
  void (*round_to_bf16_)(Tensor& x) = nullptr;
  void (*rope_rotate_half_)(Tensor& x, const Tensor& cos, const Tensor& sin, bool bf16_steps) = nullptr;
  void (*rope_interleaved_)(Tensor& x, const Tensor& cs) = nullptr;
  Tensor (*modulate)(const Tensor& x, const Tensor& scale, const std::vector<int64_t>& rows, DType storage) = nullptr;
  void (*gate_add_)(Tensor& x, const Tensor& gate, const Tensor& y, const std::vector<int64_t>& rows,
                    DType storage) = nullptr;
  Tensor (*silu_mul_as)(const Tensor& a, const Tensor& b, DType storage) = nullptr;
  Tensor (*rms_norm_as)(const Tensor& x, const Tensor& weight, float eps, DType storage) = nullptr;
  void (*rms_norm_modulate_bf16)(const Tensor& x, const Tensor& weight, const Tensor& scale,
                                 const std::vector<int64_t>& rows, float eps, Tensor& out) = nullptr;
  void (*rms_norm_gate_add_bf16_)(Tensor& x, const Tensor& gate, const Tensor& y, const Tensor& weight,
                                  const std::vector<int64_t>& rows, float eps) = nullptr;
  void (*head_norm_rope_bf16_)(Tensor& x, const Tensor& weight, const Tensor& cs, float eps) = nullptr;
  void (*silu_mul_bf16)(const Tensor& a, const Tensor& b, Tensor& out) = nullptr;
  void (*to_bf16_into)(const Tensor& x, Tensor& out) = nullptr;
  std::array<Tensor, 4> (*adaln_chunks)(const Tensor& mod, DType storage) = nullptr;
};

[[noreturn]] void missing_device_op(Device device, const char* op);

// The entry `m` of the table of `device` (not the CPU); throws naming `op` when it is missing.
template <class F>
F device_op(Device device, F OpTable::*m, const char* op) {
  const DeviceBackend* b = device_backend(device);
  F f = b && b->ops ? b->ops->*m : nullptr;
  if (!f) missing_device_op(device, op);
  return f;
}

}  // namespace zimage::ops

// First line of an op in ops.h: `ZI_DEVICE_OP(x, linear, x, w, bias);` runs the device's entry
// and returns its result when x is not on the CPU.
#define ZI_DEVICE_OP(first, name, ...)                                                                      \
  do {                                                                                                      \
    if ((first).device() != ::zimage::Device::CPU) [[unlikely]]                                             \
      return ::zimage::ops::device_op((first).device(), &::zimage::ops::OpTable::name, #name)(__VA_ARGS__); \
  } while (0)
