// Qwen3Model (transformers/models/qwen3/modeling_qwen3.py) as ZImagePipeline._encode_prompt uses
// it: hidden_states[-2] (the output of the second-to-last decoder layer) for the real tokens.
#pragma once
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "core/tensor.h"
#include "ops/precision.h"
#include "text_encoder/qwen3_config.h"
#include "weights/loader.h"

namespace zimage {

class Qwen3TextEncoder {
 public:
  // Loads `<dir>/config.json` and the weights in `dir` (Qwen3Model names, or Qwen3ForCausalLM
  // names under "model."; lm_head is ignored). compute: F32 (exact fp32 math on the stored
  // weights) or BF16 (emulates a torch bf16 run: every intermediate tensor rounded to bf16).
  // `weights_file`: a .safetensors or .gguf file (transformers' names, or llama.cpp's Qwen3 GGUF
  // names blk.N.attn_q.weight, ...) instead of the weights in `dir`; quantized GGUF linear
  // weights and token embeddings stay quantized.
  static Qwen3TextEncoder load(const std::string& dir, DType compute, const std::string& weights_file = "");
  // The same with the config given (e.g. inferred from `weights_file`; `dir` may then be "").
  static Qwen3TextEncoder load_with_config(const Qwen3Config& c, const std::string& dir, DType compute,
                                           const std::string& weights_file = "");
  // Every tensor load() reads, with the shape the config implies; `prefix` is "" (Qwen3Model) or
  // "model." (Qwen3ForCausalLM).
  static std::vector<TensorSpec> expected_tensors(const Qwen3Config& c, const std::string& prefix);
  // Opens the weights in `dir`, finds the prefix and checks them against expected_tensors from the
  // safetensors headers alone (no tensor data is read). Errors start with "[text_encoder]".
  static WeightStore open_weights(const std::string& dir, const Qwen3Config& c, std::string* prefix = nullptr,
                                  const std::string& weights_file = "");
  // Exposes llama.cpp's Qwen3 GGUF names (token_embd, blk.N.attn_q, ...) under transformers' names.
  static void convert_llama_cpp_names(WeightStore& ws);

  // hidden_states[-2] for one prompt: ids are the (possibly right-padded) token ids and the first
  // num_real of them are real. Under the causal mask real tokens never attend to padding, so only
  // those are computed. Returns [num_real, hidden_size] float32.
  Tensor encode(const std::vector<int32_t>& ids, int64_t num_real) const;
  // Same, with a tokenizer attention mask (ones then zeros: right padding only).
  Tensor encode_masked(const std::vector<int32_t>& ids, const std::vector<int32_t>& attention_mask) const;
  // One result per prompt.
  std::vector<Tensor> encode_batch(const std::vector<std::vector<int32_t>>& ids,
                                   const std::vector<int64_t>& num_real) const;

  const Qwen3Config& config() const { return cfg_; }
  DType compute_dtype() const { return compute_; }
  // Decoder layers actually held and run (num_hidden_layers - 1).
  int64_t layers_run() const { return int64_t(layers_.size()); }

 private:
  struct Layer {
    Tensor input_layernorm, post_attention_layernorm;           // [hidden] f32 (bf16-valued in BF16 mode)
    weights::LinearWeight q_proj, k_proj, v_proj, o_proj;       // dense (ops::prepare_weight) or quantized
    Tensor q_proj_bias, k_proj_bias, v_proj_bias, o_proj_bias;  // only with attention_bias
    Tensor q_norm, k_norm;                                      // [head_dim]
    weights::LinearWeight gate_proj, up_proj, down_proj;
  };

  Tensor embed(const std::vector<int32_t>& ids, int64_t n) const;
  Tensor norm(const Tensor& x, const Tensor& weight) const;
  void decoder_layer(Tensor& x, const Layer& l, const Tensor& cos, const Tensor& sin) const;

  Qwen3Config cfg_;
  DType compute_ = DType::F32;
  ops::Precision prec_;      // of compute_
  WeightStore store_;        // keeps the mapped embedding table alive
  Tensor embed_tokens_;      // [vocab, hidden] as stored (a view into the file)
  QuantizedTensor embed_q_;  // or quantized (GGUF): rows dequantized on lookup
  bool embed_quantized_ = false;
  std::vector<Layer> layers_;
};

}  // namespace zimage
