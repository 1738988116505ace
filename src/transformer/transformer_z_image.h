// ZImageTransformer2DModel, the Z-Image denoiser, following diffusers
// models/transformers/transformer_z_image.py (basic text-to-image mode, as ZImagePipeline calls it).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "weights/lora.h"

#include "core/safetensors.h"
#include "core/tensor.h"
#include "transformer/config.h"
#include "transformer/controlnet_z_image.h"
#include "transformer/final_layer.h"
#include "transformer/rope_embedder.h"
#include "transformer/timestep_embedder.h"
#include "transformer/transformer_block.h"

namespace zimage {

class ZImageTransformer2DModel {
 public:
  // Loads `<dir>/config.json` and the weights in `dir` (or in `weights_file`, a .safetensors or
  // .gguf file with the diffusers tensor names, when given). `compute`: F32 (exact) or BF16
  // (emulates a torch bf16 run: bf16 GEMM inputs, activations rounded where torch stores bf16
  // tensors). Quantized GGUF linear weights stay quantized in the mapping (ops/quantized.h).
  // `loras` are merged into the dense linear weights they name and run as run-time branches on
  // quantized ones (weights/lora.h).
  // `device`: where the weights live and forward() computes (inputs and results stay on the CPU);
  // a device needs its backend registered (e.g. zimage::cuda::register_backend()).
  static ZImageTransformer2DModel load(const std::string& dir, DType compute, const std::string& weights_file = "",
                                       const std::vector<weights::LoraSpec>& loras = {}, Device device = Device::CPU);
  // The same with the config given (e.g. inferred from `weights_file`; `dir` may then be "").
  static ZImageTransformer2DModel load_with_config(const ZImageTransformerConfig& c, const std::string& dir,
                                                   DType compute, const std::string& weights_file = "",
                                                   const std::vector<weights::LoraSpec>& loras = {},
                                                   Device device = Device::CPU);
  // Every tensor load() reads, with the shape the config implies (diffusers' state dict names).
  static std::vector<TensorSpec> expected_tensors(const ZImageTransformerConfig& c);
  // Opens the weights in `dir` and checks them against expected_tensors(c) from the safetensors
  // headers alone (names, shapes, dtypes; no tensor data is read). Errors start with "[transformer]".
  static WeightStore open_weights(const std::string& dir, const ZImageTransformerConfig& c,
                                  const std::string& weights_file = "");
  // Exposes the original / ComfyUI key layout under diffusers' names (no-op for diffusers keys).
  static void convert_original_layout(WeightStore& ws);

  // x[i]: [C, F, H, W] float32 latents; t[i]: (1000 - timestep) / 1000; cap[i]: [L_i, cap_feat_dim]
  // float32 caption features.  Returns one [C, F, H, W] float32 prediction per item.
  // `control`: a ControlNet run with this transformer's shared modules (diffusers' controlnet(...)
  // then transformer(..., controlnet_block_samples=...)), its hints added after the layers it names.
  std::vector<Tensor> forward(const std::vector<Tensor>& x, const std::vector<float>& t, const std::vector<Tensor>& cap,
                              int64_t patch_size = 2, int64_t f_patch_size = 1,
                              const ControlInput* control = nullptr) const;

  // Called with every named intermediate of forward ("t_embedder", "x_embedder", "noise_refiner.0",
  // "cap_embedder", "context_refiner.0", "layers.0", "final_layer"): packed [tokens, features] rows.
  using DebugFn = std::function<void(const std::string& name, const Tensor& value)>;
  void set_debug(DebugFn fn) { debug_ = std::move(fn); }

  // Every linear layer's run-time LoRA slot, by weight name: attach, rescale and detach adapters
  // between forwards (weights::LoraSet::attach, set_adapter_scale, detach_adapter).
  const weights::LoraSlots& lora_slots() const { return *lora_slots_; }
  // After a change of the slots: forget what forward() cached from the old weights (the context
  // refiner's output for the last caption).
  void lora_changed();

  const ZImageTransformerConfig& config() const { return cfg_; }
  DType compute() const { return compute_; }
  // The precision forward() runs with: Precision::of(compute) after load(). Its storage must be
  // the compute dtype; tests turn the fused passes off to compare with the plain composition.
  ops::Precision precision() const { return prec_; }
  void set_precision(ops::Precision p);
  Device device() const { return device_; }

 private:
  ZImageTransformerConfig cfg_;
  DType compute_ = DType::F32;
  ops::Precision prec_;
  Device device_ = Device::CPU;
  std::shared_ptr<WeightStore> store_;  // keeps the mapped weights alive
  std::map<std::string, weights::LinearWeight> x_embedder_w_;
  std::map<std::string, Tensor> x_embedder_b_;                  // all_x_embedder["{p}-{f}"]
  std::map<std::string, transformer::FinalLayer> final_layer_;  // all_final_layer["{p}-{f}"]
  std::vector<transformer::ZImageTransformerBlock> noise_refiner_, context_refiner_, layers_;
  transformer::TimestepEmbedder t_embedder_;
  weights::LinearWeight cap_linear_w_;
  Tensor cap_norm_w_, cap_linear_b_;  // cap_embedder: RMSNorm, Linear
  std::vector<float> x_pad_token_, cap_pad_token_;
  std::shared_ptr<transformer::RopeEmbedder> rope_;
  std::shared_ptr<weights::LoraSlots> lora_slots_;
  DebugFn debug_;
  // What forward() reuses from call to call: activation buffers and the context refiner's output
  // for the last caption (it depends only on the caption features, not on the latents or t).
  struct RunState;
  std::shared_ptr<RunState> run_;
};

}  // namespace zimage
