// LoRA adapters for the transformer (issue 15), read from .safetensors files in diffusers/PEFT
// format (`transformer.<module>.lora_A.weight` / `lora_B.weight`, optional `<module>.alpha`) or
// in the trainers' formats diffusers' ZImageLoraLoaderMixin converts (`diffusion_model.` prefix,
// kohya `lora_unet_<module_with_underscores>.lora_down/lora_up.weight` + `alpha`).
//
// Two ways to apply them:
// - merged into the dense weights at load: W' = W + scale * B @ A (alpha / rank folded into A and
//   B as diffusers folds it), in float32, then rounded to the compute dtype (Loader::linear). The
//   fastest (no cost per step); the scale is fixed.
// - run time: the weight stays as it is and the linear op adds the branch PEFT's lora.Linear adds,
//   y = W x + sum_i scale_i * B_i (A_i x) (weights::linear on a LinearWeight with a LoraSlot;
//   apply_lora). The scales can change between calls (set_scale), adapters can be attached and
//   detached, and it is the only way on a quantized (GGUF) weight, where merging would requantize.
#pragma once
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "core/tensor.h"

namespace zimage::weights {

// One --lora FILE[:SCALE].
struct LoraSpec {
  std::string path;
  double scale = 1.0;
  std::string name;  // adapter name; "" = the file's stem
};
// "FILE" or "FILE:SCALE" (the text after the last ':' when it parses as a finite number).
LoraSpec parse_lora_arg(const std::string& arg);

// The file's stem ("dir/style.safetensors" -> "style"): the default adapter name, what A1111's
// <lora:name:scale> names.
std::string lora_stem(const std::string& path);

struct LoraDelta {
  // alpha / rank is folded into a and b as diffusers' _convert_non_diffusers_z_image_lora_to_diffusers
  // folds it (a * scale_down, b * scale_up, each rounded to the file's dtype), so the layer adds
  // scale * b (a x), as PEFT does with lora_alpha = rank.
  Tensor a;      // [rank, in] float32
  Tensor b;      // [out, rank] float32
  double scale;  // the adapter's weight (set_adapters)
  std::string adapter;
};

// Run time: one adapter's branch on one linear layer, as PEFT's lora.Linear.forward runs it.
struct LoraBranch {
  std::string adapter;
  Tensor a, b;  // [rank, in], [out, rank] in the compute dtype (bf16 in a bf16 run, like PEFT's cast)
  double scale = 1.0;
  bool active = true;
};
// The run-time branches of one linear layer (shared by the LinearWeight that the model holds and
// the component's LoraSlots, through which adapters are attached, rescaled and detached).
struct LoraSlot {
  DType compute = DType::F32;
  std::vector<LoraBranch> branches;
  bool any_active() const {
    for (const auto& b : branches)
      if (b.active) return true;
    return false;
  }
};
using LoraSlots = std::map<std::string, std::shared_ptr<LoraSlot>>;  // by weight name

// y (the base layer's result for x, [M, N] as f32 or, in a bf16 run, bf16) += every active
// branch, in PEFT's order and dtypes: result = result + lora_B(lora_A(x)) * scaling per adapter.
// In a bf16 run every tensor torch materialises is rounded to bf16: the result, x, A x, B(A x),
// the product with the scale and each sum.
void apply_lora(const Tensor& x, const LoraSlot& slot, Tensor& y);

class LoraSet {
 public:
  // Reads the files and maps every key to a module of `specs` (the component's weights, e.g.
  // ZImageTransformer2DModel::expected_tensors). Errors ("[lora] <file>: ...") for keys that
  // match no module (the first few listed), wrong shapes, rank 0 or larger than the layer,
  // non-finite alpha / scale / values, a lora_A without its lora_B.
  static LoraSet load(const std::vector<LoraSpec>& files, const std::vector<TensorSpec>& specs);

  bool empty() const { return deltas_.empty(); }
  // The deltas to merge into weight `name` ("layers.0.attention.to_q.weight"), or nullptr.
  const std::vector<LoraDelta>* find(const std::string& name) const;
  // W (float32 [out, in], owned) += every delta of `name`.
  void merge_into(const std::string& name, Tensor& w) const;
  // The deltas of `name` as run-time branches on `slot` (a quantized weight, or a run-time adapter).
  void attach_to(const std::string& name, LoraSlot& slot) const;
  // Every delta as run-time branches on the component's slots (Error naming a weight without one).
  void attach(const LoraSlots& slots) const;
  size_t num_modules() const { return deltas_.size(); }
  // After a component's load: an Error naming the first weights with deltas that the load never
  // merged or attached (a module the model lists but does not read through Loader::linear).
  void check_all_merged(const std::string& component) const;

 private:
  std::map<std::string, std::vector<LoraDelta>> deltas_;
  mutable std::set<std::string> merged_;
};

// Run-time adapters on a component's slots, by adapter name: the scale and whether it runs
// (diffusers' set_adapters: adapters not named are kept but do not run); detach removes its branches.
void set_adapter_scale(const LoraSlots& slots, const std::string& adapter, double scale, bool active);
void detach_adapter(const LoraSlots& slots, const std::string& adapter);

// The file's sha256 (lowercase hex), as A1111 / civitai record it.
std::string file_sha256(const std::string& path);

}  // namespace zimage::weights
