#include "transformer/config.h"

#include <numeric>

#include "core/config.h"
#include "core/error.h"

namespace zimage {

namespace {
std::string list_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}
}  // namespace

bool ZImageTransformerConfig::has_patch(int64_t p, int64_t f) const {
  for (size_t i = 0; i < all_patch_size.size(); ++i)
    if (all_patch_size[i] == p && all_f_patch_size[i] == f) return true;
  return false;
}

ZImageTransformerConfig ZImageTransformerConfig::load(const std::string& path) {
  ZImageTransformerConfig c;
  try {
    JsonConfig j = JsonConfig::load(path);
    std::string cls = j.get_string("_class_name", "ZImageTransformer2DModel");
    if (cls != "ZImageTransformer2DModel")
      j.bad("_class_name", "is '" + cls + "', expected 'ZImageTransformer2DModel'");
    c.all_patch_size = j.get_int_list("all_patch_size", c.all_patch_size);
    c.all_f_patch_size = j.get_int_list("all_f_patch_size", c.all_f_patch_size);
    c.in_channels = j.get_int("in_channels", c.in_channels, 1, 1 << 16);
    c.dim = j.get_int("dim", c.dim, 1, 1 << 20);
    c.n_layers = j.get_int("n_layers", c.n_layers, 0, 10000);
    c.n_refiner_layers = j.get_int("n_refiner_layers", c.n_refiner_layers, 0, 10000);
    c.n_heads = j.get_int("n_heads", c.n_heads, 1, 1 << 16);
    c.n_kv_heads = j.get_int("n_kv_heads", c.n_heads, 1, 1 << 16);
    c.norm_eps = j.get_float("norm_eps", c.norm_eps);
    if (!(c.norm_eps > 0)) j.bad("norm_eps", "= " + std::to_string(c.norm_eps) + " must be positive");
    c.qk_norm = j.get_bool("qk_norm", c.qk_norm);
    c.cap_feat_dim = j.get_int("cap_feat_dim", c.cap_feat_dim, 1, 1 << 20);
    if (j.has("siglip_feat_dim")) c.siglip_feat_dim = j.get_int("siglip_feat_dim", 0, 1, 1 << 20);
    c.rope_theta = j.get_float("rope_theta", c.rope_theta);
    if (!(c.rope_theta > 0)) j.bad("rope_theta", "= " + std::to_string(c.rope_theta) + " must be positive");
    c.t_scale = j.get_float("t_scale", c.t_scale);
    c.axes_dims = j.get_int_list("axes_dims", c.axes_dims);
    c.axes_lens = j.get_int_list("axes_lens", c.axes_lens);
  } catch (const Error& e) {
    std::string m = e.what();
    if (m.rfind("[transformer]", 0) == 0) throw;
    fail("[transformer] ", m);
  }
  c.validate(path);
  return c;
}

void ZImageTransformerConfig::validate(const std::string& origin) const {
  auto bad = [&](const auto&... a) { fail("[transformer] ", origin, ": ", a...); };
  if (all_patch_size.empty()) bad("all_patch_size is empty");
  if (all_patch_size.size() != all_f_patch_size.size())
    bad("all_patch_size ", list_str(all_patch_size), " and all_f_patch_size ", list_str(all_f_patch_size),
        " differ in length");
  for (size_t i = 0; i < all_patch_size.size(); ++i) {
    if (all_patch_size[i] < 1 || all_patch_size[i] > 64)
      bad("all_patch_size entry ", all_patch_size[i], " is out of range [1, 64]");
    if (all_f_patch_size[i] < 1 || all_f_patch_size[i] > 64)
      bad("all_f_patch_size entry ", all_f_patch_size[i], " is out of range [1, 64]");
  }
  if (dim % n_heads != 0) bad("dim ", dim, " is not divisible by n_heads ", n_heads);
  const int64_t hd = head_dim();
  if (hd % 2 != 0) bad("head_dim ", hd, " (dim ", dim, " / n_heads ", n_heads, ") is odd; RoPE needs pairs");
  if (axes_dims.size() != 3) bad("axes_dims ", list_str(axes_dims), " must have 3 entries (frame, height, width)");
  if (axes_lens.size() != axes_dims.size())
    bad("axes_lens ", list_str(axes_lens), " must have as many entries as axes_dims ", list_str(axes_dims));
  for (size_t i = 0; i < axes_dims.size(); ++i) {
    if (axes_dims[i] <= 0 || axes_dims[i] % 2 != 0)
      bad("axes_dims[", i, "] = ", axes_dims[i], " must be positive and even");
    // Positions per axis (Z-Image: 1024 caption tokens, 512 patch rows/columns); the RoPE tables
    // are built per call for the positions used, so this bounds ids, not memory.
    if (axes_lens[i] < 1 || axes_lens[i] > kMaxAxisLen)
      bad("axes_lens[", i, "] = ", axes_lens[i], " is out of range [1, ", kMaxAxisLen, "]");
  }
  const int64_t sum = std::accumulate(axes_dims.begin(), axes_dims.end(), int64_t(0));
  if (sum != hd) bad("axes_dims ", list_str(axes_dims), " sum ", sum, " != head_dim ", hd);
}

}  // namespace zimage
