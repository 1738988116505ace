#include "vae/encoder.h"

namespace zimage::vae {

void Encoder::load(const Loader& l, const AutoencoderKLConfig& cfg, const std::string& p) {
  const auto& boc = cfg.block_out_channels;
  const int64_t g = cfg.norm_num_groups, n = int64_t(boc.size());
  conv_in_.load(l, p + ".conv_in", cfg.in_channels, boc.front(), 3, 1, ops::Padding2d::same(1));
  int64_t out_ch = boc[0];
  down_blocks_.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t in_ch = out_ch;
    out_ch = boc[size_t(i)];
    const bool is_final = i == n - 1;
    const std::string bp = p + ".down_blocks." + std::to_string(i);
    auto& blk = down_blocks_[size_t(i)];
    blk.resnets.resize(size_t(cfg.layers_per_block));
    for (int64_t j = 0; j < cfg.layers_per_block; ++j)
      blk.resnets[size_t(j)].load(l, bp + ".resnets." + std::to_string(j), j == 0 ? in_ch : out_ch, out_ch, g, 1e-6f);
    if (!is_final) {
      blk.downsamplers.resize(1);
      blk.downsamplers[0].load(l, bp + ".downsamplers.0", out_ch);
    }
  }
  mid_block_.load(l, p + ".mid_block", boc.back(), g, cfg.mid_block_add_attention);
  conv_norm_out_.load(l, p + ".conv_norm_out", boc.back(), g, 1e-6f);
  conv_out_.load(l, p + ".conv_out", boc.back(), 2 * cfg.latent_channels, 3, 1, ops::Padding2d::same(1));
}

Tensor Encoder::forward(const Tensor& x, ops::Precision p) const {
  Tensor h = conv_in_.forward(x, p);
  for (const auto& blk : down_blocks_) {
    for (const auto& r : blk.resnets) h = r.forward(h, p);
    for (const auto& d : blk.downsamplers) h = d.forward(h, p);
  }
  h = mid_block_.forward(h, p);
  h = conv_norm_out_.forward(h, /*silu=*/true, p);
  return conv_out_.forward(h, p);
}

}  // namespace zimage::vae
