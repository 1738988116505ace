// AutoencoderKL config (diffusers/models/autoencoders/autoencoder_kl.py) read from vae/config.json.
#pragma once
#include <string>
#include <vector>

#include "core/config.h"

namespace zimage {

struct AutoencoderKLConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  std::vector<std::string> down_block_types{"DownEncoderBlock2D"};
  std::vector<std::string> up_block_types{"UpDecoderBlock2D"};
  std::vector<int64_t> block_out_channels{64};
  int64_t layers_per_block = 1;
  std::string act_fn = "silu";
  int64_t latent_channels = 4;
  int64_t norm_num_groups = 32;
  int64_t sample_size = 32;
  double scaling_factor = 0.18215;
  double shift_factor = 0.0;  // null in the config reads as 0
  bool has_shift_factor = false;
  bool force_upcast = true;
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;

  static constexpr int64_t kMaxBlocks = 8;  // bound on len(block_out_channels)

  // Spatial factor between latents and pixels: 2^(len(block_out_channels) - 1).
  int64_t spatial_scale() const { return int64_t(1) << (block_out_channels.size() - 1); }
  // diffusers' tile_latent_min_size: int(sample_size / 2^(len(block_out_channels) - 1)).
  int64_t tile_latent_min_size() const { return sample_size / spatial_scale(); }

  // Reads and validates `path`; errors start with "[vae]" and name file, key and value.
  static AutoencoderKLConfig load(const std::string& path);
  static AutoencoderKLConfig parse(const JsonConfig& c);
};

}  // namespace zimage
