// ZImageControlNetModel of diffusers (models/controlnets/controlnet_z_image.py): its own weights
// (control_layers, control_noise_refiner, control_all_x_embedder) and config; everything else
// (t_embedder, all_x_embedder, cap_embedder, rope, noise_refiner, context_refiner, pad tokens) is
// the transformer's, shared as diffusers' from_transformer shares it: ZImageTransformer2DModel::
// forward runs the ControlNet with its own modules when given a ControlInput.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "core/tensor.h"
#include "transformer/config.h"
#include "transformer/transformer_block.h"

namespace zimage {

class JsonConfig;

struct ZImageControlNetConfig {
  std::vector<int64_t> control_layers_places;          // main layer index each control layer's hint is added to
  std::vector<int64_t> control_refiner_layers_places;  // noise_refiner index per refiner-stage hint
  int64_t control_in_dim = 16;
  // "" (None): plain refiner blocks on the control context; "control_layers": the control layers
  // also run over the image tokens first, their hints go into the noise refiner;
  // "control_noise_refiner": control_noise_refiner is made of control blocks doing that.
  std::string add_control_noise_refiner;
  std::vector<int64_t> all_patch_size{2};
  std::vector<int64_t> all_f_patch_size{1};
  int64_t dim = 3840;
  int64_t n_refiner_layers = 2;
  int64_t n_heads = 30;
  int64_t n_kv_heads = 30;
  double norm_eps = 1e-5;
  bool qk_norm = true;

  // Parses and validates `path`; errors start with "[controlnet]" and name the key and value.
  static ZImageControlNetConfig load(const std::string& path);
  // The same for a config given as JSON (`origin` names it in errors), e.g. one inferred from a
  // single file (pipeline/single_file.h).
  static ZImageControlNetConfig parse(const nlohmann::json& json, const std::string& origin);
  // The transformer-shaped config of the control blocks (dim, heads, eps, qk_norm).
  ZImageTransformerConfig block_config(const ZImageTransformerConfig& t) const;
  // Errors ("[controlnet] ... does not match the transformer ...") when this ControlNet cannot run
  // with transformer `t`: dim, heads, patch sizes, control_in_dim below in_channels, a layer place
  // beyond the transformer's layers.
  void check_compatible(const ZImageTransformerConfig& t, const std::string& origin) const;
  // Number of hints the refiner stage makes (0 without add_control_noise_refiner).
  int64_t refiner_hints() const;

 private:
  static ZImageControlNetConfig parse_with(const std::function<JsonConfig()>& read, const std::string& path);
};

namespace transformer {
// ZImageControlTransformerBlock: a transformer block on the control state c, with before_proj
// (block_id 0: c = before_proj(c) + x) and after_proj (the hint: after_proj(c)).
class ControlBlock {
 public:
  ControlBlock() = default;
  ControlBlock(const WeightLoader& w, const std::string& prefix, const ZImageTransformerConfig& cfg, bool first);
  // Updates c ([T, dim]) and returns the hint [T, dim].
  Tensor forward(ops::Precision p, Tensor& c, const Tensor& x, const std::vector<int64_t>& rows, const Tensor& rope,
                 const Tensor& adaln, BlockBuffers& buf) const;

 private:
  bool first_ = false;
  ZImageTransformerBlock block_;
  weights::LinearWeight before_w_, after_w_;
  Tensor before_b_, after_b_;
};
}  // namespace transformer

class ZImageControlNetModel {
 public:
  // Loads `<dir>/config.json` and the weights in `dir` (diffusers' save_pretrained layout).
  // `transformer`: the config of the transformer it will run with (checked first: a mismatch is an
  // error before any weight is read).
  static ZImageControlNetModel load(const std::string& dir, DType compute, const ZImageTransformerConfig& transformer);
  // The weights at `path` (a folder as above, or one .safetensors / .gguf file) with `config`
  // (e.g. inferred from the file: pipeline/single_file.h).
  static ZImageControlNetModel load(const std::string& path, const ZImageControlNetConfig& config, DType compute,
                                    const ZImageTransformerConfig& transformer);
  static std::vector<TensorSpec> expected_tensors(const ZImageControlNetConfig& c, const ZImageTransformerConfig& t);
  // Checks the weights' headers (a folder, or one file) against expected_tensors (no data read);
  // a "control_layers" ControlNet's control_noise_refiner.* tensors are hidden (dropped).
  static WeightStore open_weights(const std::string& path, const ZImageControlNetConfig& c,
                                  const ZImageTransformerConfig& t);

  const ZImageControlNetConfig& config() const { return cfg_; }
  DType compute() const { return compute_; }

  // Used by ZImageTransformer2DModel::forward.
  std::shared_ptr<WeightStore> store_;
  ZImageControlNetConfig cfg_;
  DType compute_ = DType::F32;
  std::map<std::string, weights::LinearWeight> x_embedder_w_;  // control_all_x_embedder["{p}-{f}"]
  std::map<std::string, Tensor> x_embedder_b_;
  std::vector<transformer::ControlBlock> control_layers_;
  std::vector<transformer::ControlBlock> control_refiner_;          // "control_noise_refiner" variant
  std::vector<transformer::ZImageTransformerBlock> plain_refiner_;  // no add_control_noise_refiner
};

// What ZImageTransformer2DModel::forward needs to run a ControlNet: per item the control context
// [control_in_dim, F, H, W] (float32, same F, H, W as the latents), and the conditioning scale.
struct ControlInput {
  const ZImageControlNetModel* net = nullptr;
  std::vector<Tensor> context;
  float scale = 1.0f;
};

}  // namespace zimage
