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
  Tensor forward(const Tensor& z, ops::Precision p) const;
  Tensor forward_plain(const Tensor& z, ops::Precision p) const;  // NCHW float32 throughout
  Tensor forward_nhwc(const Tensor& z, ops::Precision p) const;   // the same, channels-last inside

  // forward_nhwc in two parts, for seamless tiled decoding: the head (conv_in and the mid block,
  // at latent resolution; z [B, L, h, w] -> channels-last [B, h, w, C]) and the up path (up
  // blocks, norm_out, conv_out) on the head's output or a window of it -> [B, out, H, W] f32.
  // With `tile` the up path's group norms take their statistics as TileNorms says; in Record
  // mode the up path stops after the last group norm and returns an empty tensor.
  Tensor forward_head(const Tensor& z, ops::Precision p) const;
  Tensor forward_up(Tensor h, vae::TileNorms* tile = nullptr) const;
  // Latent pixels around a window of the head's output that reach the up path's output inside
  // the window (the 3x3 convolutions' reach, summed over resolutions): a tile with this margin
  // decodes its window exactly as the whole image does, given the whole image's norm statistics.
  int64_t up_receptive_halo() const;

 private:
  Conv2d conv_in_, conv_out_;
  MidBlock2D mid_block_;
  std::vector<UpDecoderBlock2D> up_blocks_;
  GroupNorm conv_norm_out_;
};

}  // namespace zimage::vae
