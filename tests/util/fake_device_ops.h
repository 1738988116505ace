// The forwarding op table of the fake device (fake_device.h): each entry checks that its tensors
// are on Device::CUDA, runs the CPU op on host aliases of the same memory and hands the result
// back as a Device::CUDA tensor. calls() counts the entries run.
#pragma once
#include "ops/backend.h"
#include "ops/ops.h"
#include "util/fake_device.h"

namespace zimage::test {

struct ForwardingOps {
  static int& calls() {
    static int n = 0;
    return n;
  }
  // A device tensor's memory seen as a CPU tensor (undefined stays undefined).
  static Tensor host(const Tensor& t) {
    if (!t.defined() || t.numel() == 0) return t;
    if (t.device() != Device::CUDA)
      fail("[fake] a ", device_name(t.device()), " tensor ", shape_str(t.shape()), " was passed to a device op");
    return Tensor::from_storage(t.dtype(), t.shape(), Device::CPU, t.storage(), t.storage_owner());
  }
  static Tensor dev(const Tensor& t) {
    return Tensor::from_storage(t.dtype(), t.shape(), Device::CUDA, t.storage(), t.storage_owner());
  }
  static const Tensor* opt(const Tensor* b, Tensor& keep) {
    if (!b) return nullptr;
    keep = host(*b);
    return &keep;
  }

  static ops::OpTable table() {
    ops::OpTable t;
    t.linear = [](const Tensor& x, const Tensor& w, const Tensor* b) {
      ++calls();
      Tensor hb;
      return dev(ops::linear(host(x), host(w), opt(b, hb)));
    };
    t.linear_into = [](const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
      ++calls();
      Tensor hb, hy = host(y);
      ops::linear_into(host(x), host(w), opt(b, hb), hy);
    };
    t.attention = [](const Tensor& q, const Tensor& k, const Tensor& v, float s, bool c,
                     const std::vector<int64_t>& kv) {
      ++calls();
      return dev(ops::attention(host(q), host(k), host(v), s, c, kv));
    };
    t.attention_torch_bf16 = [](const Tensor& q, const Tensor& k, const Tensor& v, float s, bool c,
                                const std::vector<int64_t>& kv) {
      ++calls();
      return dev(ops::attention_torch_bf16(host(q), host(k), host(v), s, c, kv));
    };
    t.rms_norm = [](const Tensor& x, const Tensor& w, float eps) {
      ++calls();
      return dev(ops::rms_norm(host(x), host(w), eps));
    };
    t.layer_norm = [](const Tensor& x, const Tensor& w, const Tensor& b, float eps) {
      ++calls();
      return dev(ops::layer_norm(host(x), host(w), host(b), eps));
    };
    t.silu_ = [](Tensor& x) {
      ++calls();
      Tensor h = host(x);
      ops::silu_(h);
    };
    t.silu_mul = [](const Tensor& a, const Tensor& b) {
      ++calls();
      return dev(ops::silu_mul(host(a), host(b)));
    };
    t.add_ = [](Tensor& x, const Tensor& y) {
      ++calls();
      Tensor h = host(x);
      ops::add_(h, host(y));
    };
    t.round_to_bf16_ = [](Tensor& x) {
      ++calls();
      Tensor h = host(x);
      ops::round_to_bf16_(h);
    };
    t.rope_rotate_half_ = [](Tensor& x, const Tensor& c, const Tensor& s, bool bf) {
      ++calls();
      Tensor h = host(x);
      ops::rope_rotate_half_(h, host(c), host(s), bf);
    };
    t.rope_interleaved_ = [](Tensor& x, const Tensor& cs) {
      ++calls();
      Tensor h = host(x);
      ops::rope_interleaved_(h, host(cs));
    };
    t.modulate = [](const Tensor& x, const Tensor& s, const std::vector<int64_t>& r, DType st) {
      ++calls();
      return dev(ops::modulate(host(x), host(s), r, st));
    };
    t.gate_add_ = [](Tensor& x, const Tensor& g, const Tensor& y, const std::vector<int64_t>& r, DType st) {
      ++calls();
      Tensor h = host(x);
      ops::gate_add_(h, host(g), host(y), r, st);
    };
    t.silu_mul_as = [](const Tensor& a, const Tensor& b, DType st) {
      ++calls();
      return dev(ops::silu_mul_as(host(a), host(b), st));
    };
    t.rms_norm_as = [](const Tensor& x, const Tensor& w, float eps, DType st) {
      ++calls();
      return dev(ops::rms_norm_as(host(x), host(w), eps, st));
    };
    t.rms_norm_modulate_bf16 = [](const Tensor& x, const Tensor& w, const Tensor& s, const std::vector<int64_t>& r,
                                  float eps, Tensor& out) {
      ++calls();
      Tensor h = host(out);
      ops::rms_norm_modulate_bf16(host(x), host(w), host(s), r, eps, h);
    };
    t.rms_norm_gate_add_bf16_ = [](Tensor& x, const Tensor& g, const Tensor& y, const Tensor& w,
                                   const std::vector<int64_t>& r, float eps) {
      ++calls();
      Tensor h = host(x);
      ops::rms_norm_gate_add_bf16_(h, host(g), host(y), host(w), r, eps);
    };
    t.head_norm_rope_bf16_ = [](Tensor& x, const Tensor& w, const Tensor& cs, float eps) {
      ++calls();
      Tensor h = host(x);
      ops::head_norm_rope_bf16_(h, host(w), host(cs), eps);
    };
    t.silu_mul_bf16 = [](const Tensor& a, const Tensor& b, Tensor& out) {
      ++calls();
      Tensor h = host(out);
      ops::silu_mul_bf16(host(a), host(b), h);
    };
    t.to_bf16_into = [](const Tensor& x, Tensor& out) {
      ++calls();
      Tensor h = host(out);
      ops::to_bf16_into(host(x), h);
    };
    t.adaln_chunks = [](const Tensor& mod, DType st) {
      ++calls();
      auto c = ops::adaln_chunks(host(mod), st);
      return std::array<Tensor, 4>{dev(c[0]), dev(c[1]), dev(c[2]), dev(c[3])};
    };
    return t;
  }
};

}  // namespace zimage::test
