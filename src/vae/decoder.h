// Decoder (diffusers/models/autoencoders/vae.py, norm_type "group"): conv_in, UNetMidBlock2D,
// UpDecoderBlock2D x len(block_out_channels) (layers_per_block + 1 resnets, Upsample2D on all but
// the last), GroupNorm + SiLU, conv_out.
// forward keeps the activations channels-last (NHWC) in the compute dtype from conv_in to
// conv_out (vae_layers.h *_nhwc); forward_plain is the NCHW float32 path (as the encoder's).
#pragma once
#include <vector>

#include "vae/autoencoder_kl_config.h"
#include "vae/vae_layers.h"

namespace zimage::vae {

struct UpDecoderBlock2D {
  std::vector<ResnetBlock2D> resnets;
  std::vector<Upsample2D> upsamplers;  // zero or one
};

class Decoder {
 public:
  // Weights under `prefix` ("decoder").
  void load(const Loader& l, const AutoencoderKLConfig& cfg, const std::string& prefix);
  // z: [B, latent_channels, h, w] -> [B, out_channels, h * 2^(n-1), w * 2^(n-1)]
  Tensor forward(const Tensor& z, DType storage) const;
  Tensor forward_plain(const Tensor& z, DType storage) const;    // NCHW float32 throughout
  Tensor forward_nhwc(const Tensor& z, DType storage) const;  // the same, channels-last inside

 private:
  Conv2d conv_in_, conv_out_;
  MidBlock2D mid_block_;
  std::vector<UpDecoderBlock2D> up_blocks_;
  GroupNorm conv_norm_out_;
};

}  // namespace zimage::vae
