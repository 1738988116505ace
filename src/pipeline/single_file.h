// Configs for a pipeline loaded from single files, without a model folder (`generate
// --transformer T --text-encoder E --vae V` with no -m): diffusers' from_single_file takes them
// from the hub (Tongyi-MAI/Z-Image-Turbo's); here they come from the files themselves, offline.
//   transformer: dim, layers, refiner layers, heads (dim / head_dim, head_dim the length of the
//     q norm weight), patch sizes and in_channels (x_embedder / final_layer shapes), cap_feat_dim
//     from the tensors; the rest (rope_theta 256, t_scale 1000, axes_dims [32, 48, 48] - so
//     head_dim must be 128 -, axes_lens, norm_eps 1e-5, qk_norm) are Z-Image-Turbo's.
//   text encoder: a GGUF's qwen3.* metadata, checked against the tensor shapes; otherwise the
//     shapes, with Qwen3-4B's rope_theta 1e6, rms_norm_eps 1e-6 and 40960 positions.
//   VAE: block_out_channels, layers_per_block, in/out and latent channels, quant convs and the
//     mid-block attention from the tensors (diffusers or LDM/Flux layout); norm_num_groups 32,
//     sample_size 1024 and, for 16 latent channels, the Flux VAE's scaling 0.3611 / shift 0.1159
//     (any other latent width is an error).
//   scheduler: FlowMatchEulerDiscreteScheduler with shift 3 (Z-Image-Turbo's).
// Each result is validated by the component's own config checks and its weights are checked
// against it (every tensor's name and shape); errors name the file and the tensor.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "scheduler/flow_match_euler_config.h"
#include "text_encoder/qwen3_config.h"
#include "transformer/config.h"
#include "vae/autoencoder_kl_config.h"

namespace zimage {

ZImageTransformerConfig infer_transformer_config(const std::string& file);
Qwen3Config infer_text_encoder_config(const std::string& file);
// The VAE's config.json as inferred (before validation), and the validated config.
nlohmann::json infer_vae_config_json(const std::string& file);
AutoencoderKLConfig infer_vae_config(const std::string& file);
scheduler::FlowMatchEulerConfig zimage_turbo_scheduler_config();
// Whether `file` is a GGUF file (its magic).
bool is_gguf_file(const std::string& file);

}  // namespace zimage
