// Layers of diffusers' AutoencoderKL: Conv2d, GroupNorm, ResnetBlock2D (models/resnet.py), the
// mid-block Attention (models/attention_processor.py, group norm + one head), Upsample2D
// (models/upsampling.py), Downsample2D (models/downsampling.py) and UNetMidBlock2D
// (models/unets/unet_2d_blocks.py). Activations are float32 NCHW; the precision `p` decides
// (in the ops) where a tensor is stored as a bfloat16 torch run materialises it.
// The *_nhwc forwards take and return channels-last [B, H, W, C] activations (ops/channels_last.h)
// of the compute dtype (bf16 tensors for a bf16 run): the decoder's fast path.
#pragma once
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "ops/channels_last.h"
#include "ops/ops.h"
#include "weights/loader.h"

namespace zimage::vae {

// Weights come through the single weight loader (src/weights/loader.h), by diffusers state-dict
// name, shape-checked, converted for the compute dtype once; errors are tagged "[vae] ".
using Loader = weights::Loader;

struct Conv2d {
  Tensor weight, bias;  // [O, C, k, k], [O]
  int64_t stride = 1;
  ops::Padding2d pad;
  void load(const Loader& l, const std::string& prefix, int64_t in, int64_t out, int64_t k, int64_t stride,
            ops::Padding2d pad);
  Tensor forward(const Tensor& x, ops::Precision p) const;
  ops::ChannelsLastConv2d nhwc;  // the same weights for channels-last activations
  Tensor forward_nhwc(const Tensor& x) const { return nhwc.forward(x); }
};

// Where the group norms of a tile's forward take their statistics from (seamless tiled decoding,
// AutoencoderKL::decode_tiled_seamless). Record: each group norm normalises the tile with the
// tile's own statistics and adds those of the tile's kept window to stats[k], k its index in the
// forward; Fixed: each group norm normalises with stats[k] (the whole image's).
struct TileNorms {
  enum class Mode { Record, Fixed };
  Mode mode = Mode::Record;
  int64_t tile_h = 0, tile_w = 0;          // the tile's size in latent pixels
  ops::PixelWindow keep;                   // its kept window, in latent pixels
  std::vector<ops::GroupNormStats> stats;  // one per group norm, in forward order
  size_t next = 0;                         // the next group norm's index: reset to 0 for each tile
};

struct GroupNorm {
  Tensor weight, bias;  // [C]
  int64_t groups = 32;
  float eps = 1e-6f;
  void load(const Loader& l, const std::string& prefix, int64_t channels, int64_t groups, float eps);
  Tensor forward(const Tensor& x, bool silu, ops::Precision p) const;
  Tensor forward_nhwc(const Tensor& x, bool silu) const;
  // y may be x (in place). With `tile`: statistics as TileNorms says (x is the tile's activation
  // at an integer multiple of the latent resolution).
  void forward_nhwc_into(const Tensor& x, bool silu, Tensor& y, TileNorms* tile = nullptr) const;
};

struct Linear {
  Tensor weight, bias;  // [N, K], [N]
  void load(const Loader& l, const std::string& prefix, int64_t in, int64_t out);
  Tensor forward(const Tensor& x, ops::Precision p) const;
  // x · w^T stored, then + bias stored: what torch's linear does for a non-contiguous input
  // (the attention's transposed [B, S, C] view goes through matmul, then add).
  Tensor forward_matmul_add(const Tensor& x, ops::Precision p) const;
};

// ResnetBlock2D (temb None, output_scale_factor 1):
// h = conv1(silu(norm1(x))); h = conv2(silu(norm2(h))); out = shortcut(x) + h.
struct ResnetBlock2D {
  GroupNorm norm1, norm2;
  Conv2d conv1, conv2, conv_shortcut;
  bool has_shortcut = false;
  void load(const Loader& l, const std::string& prefix, int64_t in, int64_t out, int64_t groups, float eps);
  Tensor forward(const Tensor& x, ops::Precision p) const;
  // Consumes x: the residual sum is written into x's storage (ChannelsLastConv2d::forward_residual).
  // Intermediates live in scratch slots 0 and 1.
  Tensor forward_nhwc(Tensor x, ops::ScratchSlots& scratch, TileNorms* tile = nullptr) const;
};

// Attention(query_dim=C, heads=1, dim_head=C, norm_num_groups, residual_connection=True, bias=True)
// with AttnProcessor2_0 on a [B, C, H, W] input.
struct MidAttention {
  GroupNorm group_norm;
  Linear to_q, to_k, to_v, to_out;
  int64_t channels = 0;
  void load(const Loader& l, const std::string& prefix, int64_t channels, int64_t groups, float eps);
  Tensor forward(const Tensor& x, ops::Precision p) const;
  Tensor forward_nhwc(const Tensor& x) const;  // through the NCHW forward (lowest resolution)
};

// UNetMidBlock2D: resnets[0], then (attention, resnet) pairs; one pair here (num_layers=1).
struct MidBlock2D {
  std::vector<ResnetBlock2D> resnets;
  std::vector<MidAttention> attentions;  // empty when mid_block_add_attention is false
  void load(const Loader& l, const std::string& prefix, int64_t channels, int64_t groups, bool add_attention);
  Tensor forward(const Tensor& x, ops::Precision p) const;
  Tensor forward_nhwc(Tensor x, ops::ScratchSlots& scratch) const;
};

// Upsample2D(use_conv=True): nearest 2x, then a 3x3 conv (padding 1).
struct Upsample2D {
  Conv2d conv;
  void load(const Loader& l, const std::string& prefix, int64_t channels);
  Tensor forward(const Tensor& x, ops::Precision p) const;
  Tensor forward_nhwc(const Tensor& x) const;
};

// Downsample2D(use_conv=True, padding=0): F.pad(x, (0, 1, 0, 1)), then a 3x3 stride-2 conv.
struct Downsample2D {
  Conv2d conv;
  void load(const Loader& l, const std::string& prefix, int64_t channels);
  Tensor forward(const Tensor& x, ops::Precision p) const;
};

}  // namespace zimage::vae
