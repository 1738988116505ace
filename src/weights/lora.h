// LoRA adapters for the transformer (issue 15), read from .safetensors files in diffusers/PEFT
// format (`transformer.<module>.lora_A.weight` / `lora_B.weight`, optional `<module>.alpha`) or
// in the trainers' formats diffusers' ZImageLoraLoaderMixin converts (`diffusion_model.` prefix,
// kohya `lora_unet_<module_with_underscores>.lora_down/lora_up.weight` + `alpha`).
//
// They are merged into the dense weights at load: W' = W + scale * alpha / rank * B @ A, in
// float32, then rounded to the compute dtype (Loader::linear). diffusers runs the LoRA as a
// separate branch (y = Wx + scale * B(A(x))); in float32 the two agree to rounding. A quantized
// (GGUF) weight with a LoRA is refused (merging would requantize; no run-time branch yet).
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
};
// "FILE" or "FILE:SCALE" (the text after the last ':' when it parses as a finite number).
LoraSpec parse_lora_arg(const std::string& arg);

struct LoraDelta {
  Tensor a;       // [rank, in] float32
  Tensor b;       // [out, rank] float32
  double factor;  // scale * alpha / rank
};

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
  size_t num_modules() const { return deltas_.size(); }
  // After a component's load: an Error naming the first weights with deltas that the load never
  // merged (a module the model lists but does not read through Loader::linear).
  void check_all_merged(const std::string& component) const;

 private:
  std::map<std::string, std::vector<LoraDelta>> deltas_;
  mutable std::set<std::string> merged_;
};

// The file's sha256 (lowercase hex), as A1111 / civitai record it.
std::string file_sha256(const std::string& path);

}  // namespace zimage::weights
