// Encoder (diffusers/models/autoencoders/vae.py, double_z=True): conv_in, DownEncoderBlock2D x
// len(block_out_channels) (layers_per_block resnets, Downsample2D on all but the last),
// UNetMidBlock2D, GroupNorm + SiLU, conv_out to 2 * latent_channels (mean and logvar).
#pragma once
#include <vector>

#include "vae/autoencoder_kl_config.h"
#include "vae/vae_layers.h"

namespace zimage::vae {

struct DownEncoderBlock2D {
  std::vector<ResnetBlock2D> resnets;
  std::vector<Downsample2D> downsamplers;  // zero or one
};

class Encoder {
 public:
  void load(const Loader& l, const AutoencoderKLConfig& cfg, const std::string& prefix);
  // x: [B, in_channels, H, W] -> [B, 2 * latent_channels, ceil-ish(H / 2^(n-1)), ...]
  Tensor forward(const Tensor& x, ops::Precision p) const;

 private:
  Conv2d conv_in_, conv_out_;
  std::vector<DownEncoderBlock2D> down_blocks_;
  MidBlock2D mid_block_;
  GroupNorm conv_norm_out_;
};

}  // namespace zimage::vae
