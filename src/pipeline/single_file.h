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
//   ControlNet (--controlnet FILE; diffusers' ZImageControlNetModel.from_single_file takes the
//     config from the hub, hlky/Z-Image-Turbo-Fun-Controlnet-Union*): dim, patch sizes and
//     control_in_dim from control_all_x_embedder.{p}-{f}, heads from the q norm, the number of
//     control layers from the tensors; their places spread evenly over the transformer's layers
//     (one every round(n_layers / count), half to even: the hub configs' places for Union 1.0's 6
//     -> [0, 5, ..., 25] and 2.x's 15 -> [0, 2, ..., 28]). The variant from control_noise_refiner.0: a non-zero
//     before_proj -> "control_noise_refiner" (Union 2.1); a zero or missing before_proj of a control
//     block, or no control_noise_refiner at all -> "control_layers" (Union 2.0; its
//     control_noise_refiner is dropped as diffusers' conversion drops it); plain blocks -> null
//     (Union 1.0). control_refiner_layers_places: the first min(hints, transformer's
//     n_refiner_layers) noise_refiner layers. norm_eps 1e-5, qk_norm true.
// Each result is validated by the component's own config checks and its weights are checked
// against it (every tensor's name and shape); errors name the file and the tensor.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "scheduler/flow_match_euler_config.h"
#include "text_encoder/qwen3_config.h"
#include "transformer/config.h"
#include "transformer/controlnet_z_image.h"
#include "vae/autoencoder_kl_config.h"
#include "zimage/pipeline.h"

namespace zimage {

ZImageTransformerConfig infer_transformer_config(const std::string& file);
Qwen3Config infer_text_encoder_config(const std::string& file);
// The VAE's config.json as inferred (before validation), and the validated config.
nlohmann::json infer_vae_config_json(const std::string& file);
AutoencoderKLConfig infer_vae_config(const std::string& file);
// The ControlNet's config.json as inferred for transformer `t` (before validation), and the
// validated config (checked against `t` and the file's tensors).
nlohmann::json infer_controlnet_config_json(const std::string& file, const ZImageTransformerConfig& t);
ZImageControlNetConfig infer_controlnet_config(const std::string& file, const ZImageTransformerConfig& t);
scheduler::FlowMatchEulerConfig zimage_turbo_scheduler_config();
// Without a model folder: every component's file given, and a tokenizer (a GGUF text encoder's
// or PretrainedOptions::tokenizer); errors start with "[from_pretrained]".
void check_single_file_options(const PretrainedOptions& o);
// Whether `file` is a GGUF file (its magic).
bool is_gguf_file(const std::string& file);

}  // namespace zimage
