// Configuration of ZImageTransformer2DModel, parsed from the component's own config.json
// (diffusers/models/transformers/transformer_z_image.py, ZImageTransformer2DModel.__init__).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace zimage {

struct ZImageTransformerConfig {
  std::vector<int64_t> all_patch_size{2};
  std::vector<int64_t> all_f_patch_size{1};
  int64_t in_channels = 16;
  int64_t dim = 3840;
  int64_t n_layers = 30;
  int64_t n_refiner_layers = 2;
  int64_t n_heads = 30;
  int64_t n_kv_heads = 30;  // read for completeness: diffusers' attention ignores it (heads = n_heads)
  double norm_eps = 1e-5;
  bool qk_norm = true;
  int64_t cap_feat_dim = 2560;
  std::optional<int64_t> siglip_feat_dim;  // Omni only; its weights are not used by the text-to-image path
  double rope_theta = 256.0;
  double t_scale = 1000.0;
  std::vector<int64_t> axes_dims{32, 48, 48};
  std::vector<int64_t> axes_lens{1024, 512, 512};

  // Constants of the reference module.
  static constexpr int64_t kAdalnEmbedDim = 256;       // ADALN_EMBED_DIM
  static constexpr int64_t kSeqMultiOf = 32;           // SEQ_MULTI_OF
  static constexpr int64_t kFrequencyEmbedding = 256;  // TimestepEmbedder.frequency_embedding_size
  static constexpr int64_t kTimestepMid = 1024;        // TimestepEmbedder mid_size
  static constexpr int64_t kMaxAxisLen = 1 << 20;      // bound on each axes_lens entry

  int64_t head_dim() const { return dim / n_heads; }
  int64_t out_channels() const { return in_channels; }
  int64_t adaln_dim() const { return dim < kAdalnEmbedDim ? dim : kAdalnEmbedDim; }  // min(dim, 256)
  int64_t ffn_hidden_dim() const { return int64_t(double(dim) / 3.0 * 8.0); }        // int(dim / 3 * 8)
  // "{p}-{f}", the key of all_x_embedder / all_final_layer.
  static std::string patch_key(int64_t p, int64_t f) { return std::to_string(p) + "-" + std::to_string(f); }
  bool has_patch(int64_t p, int64_t f) const;

  // Parses and validates `path`; errors start with "[transformer]" and name the key and value.
  static ZImageTransformerConfig load(const std::string& path);
  // Checks the relations between fields (head_dim, axes, patch sizes).
  void validate(const std::string& origin) const;
};

}  // namespace zimage
