// The single weight loader (issue 13): the one place where a stored tensor becomes what an op
// consumes. Every component (transformer, text encoder, VAE) reads its weights through it, by
// name, shape-checked, with errors tagged "[component] ". The store stays memory-mapped; a tensor
// is read (made resident) only when it is asked for.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "core/tensor.h"
#include "ops/quantized.h"
#include "weights/lora.h"
#include "weights/prefetch.h"

namespace zimage::weights {

// A linear layer's weight [out, in]: dense (what ops::linear takes) or, from a GGUF file or an
// F8_E4M3 safetensors tensor, kept quantized / fp8 in the mapping (ops::linear's QuantizedMatrix
// path dequantizes / upcasts it tile by tile).
struct LinearWeight {
  Tensor dense;
  std::shared_ptr<const ops::QuantizedMatrix> quantized;
  std::shared_ptr<LoraSlot> lora;  // run-time LoRA branches (weights/lora.h), or none
  bool is_quantized() const { return quantized != nullptr; }
};
// ops::linear / ops::linear_into on either kind, plus the active run-time LoRA branches.
Tensor linear(const Tensor& x, const LinearWeight& w, const Tensor* bias = nullptr);
void linear_into(const Tensor& x, const LinearWeight& w, const Tensor* bias, Tensor& y);

class Loader {
 public:
  // `component` tags every error ("transformer" -> "[transformer] ..."); `compute` is the dtype
  // the kernels compute with (float32 or bfloat16).
  // Throws when ZIMAGE_PREFETCH has a bad value (weights/prefetch.h).
  Loader(const WeightStore& store, DType compute, std::string component)
      : store_(store), compute_(compute), component_(std::move(component)) {
    if (prefetch::enabled()) used_ = std::make_shared<std::vector<prefetch::Range>>();
  }
  // The last copy hands the linear and conv weights it returned as views of the mapping, in the
  // order it returned them, to the prefetch reader (weights/prefetch.h).
  ~Loader();
  Loader(const Loader&) = default;
  Loader& operator=(const Loader&) = delete;

  const WeightStore& store() const { return store_; }
  DType compute() const { return compute_; }
  const std::string& component() const { return component_; }
  bool has(const std::string& name) const { return store_.has(name); }
  // LoRA deltas merged into the linear weights they name (linear(), linear_weight()); the set
  // must outlive the loader. A quantized weight with a LoRA gets them as run-time branches when
  // the loader has slots; without slots it is an Error. An fp8 weight with a LoRA to merge is
  // upcast and merged.
  void set_lora(const LoraSet* lora) { lora_ = lora; }
  // Every linear_weight() gets a run-time LoRA slot, registered here by weight name.
  void set_lora_slots(LoraSlots* slots) { slots_ = slots; }
  // The device every prepared tensor (linear, linear_weight, conv, f32, param) is copied to after
  // its preparation on the CPU (default: the CPU, no copy). stored() stays a host view. Quantized
  // weights stay on the CPU only: on another device they are an Error naming the tensor.
  void set_device(Device device) { device_ = device; }
  Device device() const { return device_; }

  // The tensor as stored (a view into the mapping), checked against `shape`.
  Tensor stored(const std::string& name, const Shape& shape) const;
  // A linear layer's weight [out, in], in what ops::linear computes with. A quantized (GGUF)
  // tensor is an Error here (an fp8 one is upcast): components that take quantized weights use
  // linear_weight().
  Tensor linear(const std::string& name, int64_t out, int64_t in) const;
  // The same, or the quantized tensor as it lies in the mapping.
  LinearWeight linear_weight(const std::string& name, int64_t out, int64_t in) const;
  // A conv weight [O, C, kh, kw], in what ops::conv2d computes with.
  Tensor conv(const std::string& name, const Shape& shape) const;
  // Any other parameter, as float32 (may share the mapping).
  Tensor f32(const std::string& name, const Shape& shape) const;
  // A norm weight or bias as the model holds it, in float32 memory of its own: rounded through
  // bfloat16 when computing in bfloat16 (a bf16 model holds bf16 parameters).
  Tensor param(const std::string& name, const Shape& shape) const;

 private:
  const WeightStore& store_;
  DType compute_;
  std::string component_;
  const LoraSet* lora_ = nullptr;
  LoraSlots* slots_ = nullptr;
  Device device_ = Device::CPU;
  Tensor place(const Tensor& t) const;
  std::shared_ptr<std::vector<prefetch::Range>> used_;  // null: prefetch off
  void record(const std::string& name, const void* data, size_t bytes, bool map = true) const;
};

}  // namespace zimage::weights
