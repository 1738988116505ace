// AutoencoderKL (diffusers/models/autoencoders/autoencoder_kl.py), Flux / Z-Image layout:
// encoder + decoder, optional quant_conv / post_quant_conv, DiagonalGaussianDistribution,
// tiled decoding (tiled_decode / blend_v / blend_h) chosen automatically under a memory budget.
#pragma once
#include <functional>
#include <string>

#include "vae/autoencoder_kl_config.h"
#include "vae/decoder.h"
#include "vae/encoder.h"

namespace zimage {

// DiagonalGaussianDistribution(parameters) with parameters = [mean | logvar] along channels.
struct LatentDistribution {
  Tensor mean;               // [B, latent_channels, h, w] f32
  Tensor logvar;             // clamped to [-30, 20]
  ops::Precision precision;  // how the run holds tensors (bf16 rounds std, products, sums)

  Tensor mode() const { return mean; }
  Tensor std() const;  // exp(0.5 * logvar)
  // mean + std * noise, noise of mean's shape (randn_tensor(mean.shape, generator) upstream).
  Tensor sample(const Tensor& noise) const;
  // Same, drawing the noise from `randn(shape)` (e.g. a seeded torch-compatible generator).
  Tensor sample(const std::function<Tensor(const Shape&)>& randn) const;
};

struct VaeDecodeOptions {
  enum class Tiling { Auto, Off, On };
  // Seamless: every tile is decoded with a margin wide enough for the convolutions
  // (Decoder::up_receptive_halo) and normalised with the whole image's group norm statistics
  // (gathered in a first pass over the tiles); conv_in and the mid block (attention included)
  // run on the whole latent. The result matches the untiled decode closely (PSNR > 40 dB on the
  // fixtures) at about twice the compute. Diffusers: AutoencoderKL.tiled_decode exactly (each
  // tile normalised and attended on its own, seams blended), what diffusers' enable_tiling() gives.
  enum class TileMode { Seamless, Diffusers };
  Tiling tiling = Tiling::Auto;
  TileMode tile_mode = TileMode::Seamless;
  // Latent tile size. Diffusers mode: 0 = diffusers' default int(sample_size / 2^(n-1)) with
  // sample tiles of sample_size; an explicit size has sample tiles of tile_latent_size * 2^(n-1).
  // Seamless mode: the kept part of a tile; 0 = diffusers' default tile size or smaller, the
  // largest (a multiple of 8) whose decode fits the memory budget.
  int64_t tile_latent_size = 0;
  double tile_overlap_factor = 0.25;  // Diffusers mode
  // Auto tiling: tile when the untiled decode's estimated working memory exceeds this.
  // 0 = half of the physical memory.
  size_t memory_budget_bytes = 0;
};

class AutoencoderKL {
 public:
  // `dir` is the vae folder (config.json + diffusion_pytorch_model.safetensors). compute F32
  // (default: force_upcast, what the official pipeline does) or BF16 (bf16 weights and tensors
  // rounded to bf16 wherever a bfloat16 torch run stores them).
  // `weights_file`, when given, is one .safetensors (or .gguf) file used instead of the folder's
  // weights: diffusers' names, or the original LDM / Flux layout (`ae.safetensors`:
  // encoder.down.N.block.M, mid.attn_1, norm_out; `first_stage_model.` / `vae.` prefixes), converted
  // as diffusers' convert_ldm_vae_checkpoint does (convert_ldm_layout).
  static AutoencoderKL load(const std::string& dir, DType compute = DType::F32, const std::string& weights_file = "");
  // The same with the config given (e.g. inferred from `weights_file`; `dir` may then be "").
  static AutoencoderKL load_with_config(const AutoencoderKLConfig& c, const std::string& dir,
                                        DType compute = DType::F32, const std::string& weights_file = "");
  // Every tensor load() reads, with the shape the config implies (diffusers' state dict names).
  static std::vector<TensorSpec> expected_tensors(const AutoencoderKLConfig& c);
  // Opens the weights in `dir` and checks them against expected_tensors(c) from the safetensors
  // headers alone (no tensor data is read). Errors start with "[vae]".
  static WeightStore open_weights(const std::string& dir, const AutoencoderKLConfig& c,
                                  const std::string& weights_file = "");
  // diffusers' convert_ldm_vae_checkpoint (single_file_utils.py) as views of the stored tensors:
  // the LDM names are exposed under diffusers' names (up blocks in reverse order, nin_shortcut ->
  // conv_shortcut, norm_out -> conv_norm_out, mid.attn_1's q/k/v/proj_out 1x1 convolutions as
  // linear [C, C] weights). Keys it does not map are ignored, as diffusers drops them. A file
  // already in diffusers' layout is left as it is.
  static void convert_ldm_layout(WeightStore& ws, const AutoencoderKLConfig& c);

  const AutoencoderKLConfig& config() const { return cfg_; }
  DType compute_dtype() const { return compute_; }

  // Pipeline helper: latents / scaling_factor + shift_factor (in the compute dtype's storage).
  Tensor latents_to_vae_space(const Tensor& latents) const;

  // z: [B, latent_channels, h, w] (VAE space) -> [B, out_channels, h * s, w * s] f32, s = 2^(n-1).
  Tensor decode(const Tensor& z, const VaeDecodeOptions& opt = {}) const;
  Tensor decode_untiled(const Tensor& z) const;
  Tensor decode_tiled(const Tensor& z, int64_t tile_latent, int64_t tile_sample, double overlap_factor) const;
  // Seamless tiling (VaeDecodeOptions::TileMode::Seamless) with kept tiles of tile_latent latents.
  Tensor decode_tiled_seamless(const Tensor& z, int64_t tile_latent) const;
  // The seamless kept tile size for a [B, *, h, w] latent under `budget_bytes` (see VaeDecodeOptions).
  int64_t seamless_tile_size(int64_t B, int64_t h, int64_t w, size_t budget_bytes) const;
  // Estimated peak working memory (bytes) of an untiled decode of a [B, *, h, w] latent.
  size_t decode_working_bytes(int64_t B, int64_t h, int64_t w) const;

  // x: [B, in_channels, H, W] in [-1, 1] -> the latent distribution.
  LatentDistribution encode(const Tensor& x) const;

 private:
  Tensor check_latents(const Tensor& z) const;
  AutoencoderKLConfig cfg_;
  DType compute_ = DType::F32;
  ops::Precision prec_;  // of compute_
  vae::Encoder encoder_;
  vae::Decoder decoder_;
  vae::Conv2d quant_conv_, post_quant_conv_;
};

}  // namespace zimage
