#include "vae/decoder.h"

#include <cmath>

namespace zimage::vae {

void Decoder::load(const Loader& l, const AutoencoderKLConfig& cfg, const std::string& p) {
  const auto& boc = cfg.block_out_channels;
  const int64_t g = cfg.norm_num_groups, n = int64_t(boc.size());
  conv_in_.load(l, p + ".conv_in", cfg.latent_channels, boc.back(), 3, 1, ops::Padding2d::same(1));
  mid_block_.load(l, p + ".mid_block", boc.back(), g, cfg.mid_block_add_attention);
  std::vector<int64_t> rev(boc.rbegin(), boc.rend());
  int64_t out_ch = rev[0];
  up_blocks_.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t prev_ch = out_ch;
    out_ch = rev[size_t(i)];
    const bool is_final = i == n - 1;
    const std::string bp = p + ".up_blocks." + std::to_string(i);
    auto& blk = up_blocks_[size_t(i)];
    blk.resnets.resize(size_t(cfg.layers_per_block + 1));
    for (int64_t j = 0; j <= cfg.layers_per_block; ++j)
      blk.resnets[size_t(j)].load(l, bp + ".resnets." + std::to_string(j), j == 0 ? prev_ch : out_ch, out_ch, g, 1e-6f);
    if (!is_final) {
      blk.upsamplers.resize(1);
      blk.upsamplers[0].load(l, bp + ".upsamplers.0", out_ch);
    }
  }
  conv_norm_out_.load(l, p + ".conv_norm_out", boc.front(), g, 1e-6f);
  conv_out_.load(l, p + ".conv_out", boc.front(), cfg.out_channels, 3, 1, ops::Padding2d::same(1));
}

Tensor Decoder::forward(const Tensor& z, ops::Precision p) const { return forward_nhwc(z, p); }

Tensor Decoder::forward_nhwc(const Tensor& z, ops::Precision p) const { return forward_up(forward_head(z, p)); }

Tensor Decoder::forward_head(const Tensor& z, ops::Precision p) const {
  ops::ScratchSlots scratch;
  Tensor h = conv_in_.forward_nhwc(ops::to_channels_last(z, p.storage()));  // [B, h, w, C]
  return mid_block_.forward_nhwc(std::move(h), scratch);
}

Tensor Decoder::forward_up(Tensor h, TileNorms* tile) const {
  ops::ScratchSlots scratch;
  if (tile) tile->next = 0;
  for (const auto& blk : up_blocks_) {
    for (const auto& r : blk.resnets) h = r.forward_nhwc(std::move(h), scratch, tile);
    for (const auto& u : blk.upsamplers) h = u.forward_nhwc(h);
  }
  conv_norm_out_.forward_nhwc_into(h, /*silu=*/true, h, tile);  // in place
  if (tile && tile->mode == TileNorms::Mode::Record) return Tensor();
  return conv_out_.nhwc.forward_nchw(h);  // [B, out_channels, H, W] f32
}

int64_t Decoder::up_receptive_halo() const {
  // Each 3x3 convolution at resolution 2^i (latent = 1) reaches 1 / 2^i latent pixels further.
  double reach = 0, scale = 1;
  for (const auto& blk : up_blocks_) {
    reach += 2.0 * double(blk.resnets.size()) / scale;  // conv1 and conv2 of each resnet
    if (!blk.upsamplers.empty()) {
      scale *= 2;
      reach += 1.0 / scale;  // the upsampler's conv, after the 2x upsample
    }
  }
  reach += 1.0 / scale;  // conv_out
  return int64_t(std::ceil(reach - 1e-9));
}

Tensor Decoder::forward_plain(const Tensor& z, ops::Precision p) const {
  Tensor h = conv_in_.forward(z, p);
  h = mid_block_.forward(h, p);
  for (const auto& blk : up_blocks_) {
    for (const auto& r : blk.resnets) h = r.forward(h, p);
    for (const auto& u : blk.upsamplers) h = u.forward(h, p);
  }
  h = conv_norm_out_.forward(h, /*silu=*/true, p);
  return conv_out_.forward(h, p);
}

}  // namespace zimage::vae
