// Qwen3Config (transformers/models/qwen3/configuration_qwen3.py) read from text_encoder/config.json.
#pragma once
#include <string>

#include "core/config.h"

namespace zimage {

struct Qwen3Config {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 40960;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;  // rope_parameters.rope_theta, or the old top-level rope_theta
  bool attention_bias = false;
  std::string hidden_act = "silu";
  std::string dtype;  // torch_dtype / dtype as stored (informational)

  // Reads and validates `path`; errors start with "[text_encoder]" and name file, key and value.
  static Qwen3Config load(const std::string& path);
  static Qwen3Config parse(const JsonConfig& c);
};

}  // namespace zimage
