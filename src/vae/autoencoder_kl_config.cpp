#include "vae/autoencoder_kl_config.h"

#include "core/error.h"

namespace zimage {

namespace {

template <class F>
auto tagged(F&& f) {
  return with_component("vae", std::forward<F>(f));
}

std::string list_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

AutoencoderKLConfig AutoencoderKLConfig::load(const std::string& path) {
  JsonConfig c = tagged([&] { return JsonConfig::load(path); });
  return parse(c);
}

AutoencoderKLConfig AutoencoderKLConfig::parse(const JsonConfig& c) {
  return tagged([&] {
    constexpr int64_t kMaxCh = 1 << 16;
    if (c.has("_class_name") && c.get_string("_class_name") != "AutoencoderKL")
      c.bad("_class_name", "= \"" + c.get_string("_class_name") + "\" is not supported (only \"AutoencoderKL\")");
    AutoencoderKLConfig a;
    a.in_channels = c.get_int("in_channels", 3, 1, kMaxCh);
    a.out_channels = c.get_int("out_channels", 3, 1, kMaxCh);
    if (c.has("down_block_types")) a.down_block_types = c.get_string_list("down_block_types");
    if (c.has("up_block_types")) a.up_block_types = c.get_string_list("up_block_types");
    a.block_out_channels = c.get_int_list("block_out_channels", {64});
    a.layers_per_block = c.get_int("layers_per_block", 1, 1, 1000);
    a.act_fn = c.get_string("act_fn", "silu");
    a.latent_channels = c.get_int("latent_channels", 4, 1, kMaxCh);
    a.norm_num_groups = c.get_int("norm_num_groups", 32, 1, kMaxCh);
    // sample_size may be an int or a [h, w] list; diffusers uses the first entry for tiling.
    if (c.has("sample_size") && c.json()["sample_size"].is_array()) {
      auto s = c.get_int_list("sample_size");
      if (s.empty()) c.bad("sample_size", "is an empty list");
      a.sample_size = s[0];
    } else {
      a.sample_size = c.get_int("sample_size", 32);
    }
    if (a.sample_size < 1 || a.sample_size > kMaxCh)
      c.bad("sample_size",
            "= " + std::to_string(a.sample_size) + " is out of range [1, " + std::to_string(kMaxCh) + "]");
    a.scaling_factor = c.get_float("scaling_factor", 0.18215);
    a.has_shift_factor = c.has("shift_factor");
    a.shift_factor = c.get_float("shift_factor", 0.0);
    a.force_upcast = c.get_bool("force_upcast", true);
    a.use_quant_conv = c.get_bool("use_quant_conv", true);
    a.use_post_quant_conv = c.get_bool("use_post_quant_conv", true);
    a.mid_block_add_attention = c.get_bool("mid_block_add_attention", true);

    const size_t n = a.block_out_channels.size();
    // Each block after the first halves the resolution: 8 blocks is a 128x VAE (Z-Image's has 4).
    if (n < 1 || n > size_t(kMaxBlocks))
      c.bad("block_out_channels", "must list 1 to " + std::to_string(kMaxBlocks) + " channel counts, got " +
                                      (n <= 16 ? list_str(a.block_out_channels) : std::to_string(n) + " entries"));
    if (a.down_block_types.size() != n)
      c.bad("down_block_types", "has " + std::to_string(a.down_block_types.size()) +
                                    " entries but block_out_channels " + list_str(a.block_out_channels) + " has " +
                                    std::to_string(n));
    if (a.up_block_types.size() != n)
      c.bad("up_block_types", "has " + std::to_string(a.up_block_types.size()) + " entries but block_out_channels " +
                                  list_str(a.block_out_channels) + " has " + std::to_string(n));
    for (auto& t : a.down_block_types)
      if (t != "DownEncoderBlock2D")
        c.bad("down_block_types", "entry \"" + t + "\" is not supported (only \"DownEncoderBlock2D\")");
    for (auto& t : a.up_block_types)
      if (t != "UpDecoderBlock2D")
        c.bad("up_block_types", "entry \"" + t + "\" is not supported (only \"UpDecoderBlock2D\")");
    if (a.act_fn != "silu") c.bad("act_fn", "= \"" + a.act_fn + "\" is not supported (only \"silu\")");
    for (int64_t ch : a.block_out_channels) {
      if (ch < 1 || ch > kMaxCh) c.bad("block_out_channels", "entry " + std::to_string(ch) + " is out of range");
      if (ch % a.norm_num_groups != 0)
        c.bad("block_out_channels", "entry " + std::to_string(ch) +
                                        " is not divisible by norm_num_groups = " + std::to_string(a.norm_num_groups));
    }
    if (!(a.scaling_factor != 0.0)) c.bad("scaling_factor", "must not be 0");
    return a;
  });
}

}  // namespace zimage
