#include "transformer/controlnet_z_image.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>

#include "core/config.h"
#include "core/error.h"
#include "ops/ops.h"

namespace zimage {

namespace {
std::string list_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}
}  // namespace

ZImageControlNetConfig ZImageControlNetConfig::load(const std::string& path) {
  return parse_with([&] { return JsonConfig::load(path); }, path);
}

ZImageControlNetConfig ZImageControlNetConfig::parse(const nlohmann::json& json, const std::string& origin) {
  return parse_with([&] { return JsonConfig::from_json(json, origin); }, origin);
}

ZImageControlNetConfig ZImageControlNetConfig::parse_with(const std::function<JsonConfig()>& read,
                                                          const std::string& path) {
  ZImageControlNetConfig c;
  try {
    JsonConfig j = read();
    const std::string cls = j.get_string("_class_name", "ZImageControlNetModel");
    if (cls != "ZImageControlNetModel") j.bad("_class_name", "is '" + cls + "', expected 'ZImageControlNetModel'");
    if (!j.has("control_layers_places")) j.bad("control_layers_places", "is missing (diffusers asserts 0 in it)");
    c.control_layers_places = j.get_int_list("control_layers_places");
    c.control_refiner_layers_places = j.get_int_list("control_refiner_layers_places", {});
    if (!j.has("control_in_dim")) j.bad("control_in_dim", "is missing");
    c.control_in_dim = j.get_int("control_in_dim", 0, 1, 1 << 16);
    c.add_control_noise_refiner = j.get_string("add_control_noise_refiner", "");
    if (c.add_control_noise_refiner != "" && c.add_control_noise_refiner != "control_layers" &&
        c.add_control_noise_refiner != "control_noise_refiner")
      j.bad("add_control_noise_refiner",
            "is '" + c.add_control_noise_refiner + "', expected null, 'control_layers' or 'control_noise_refiner'");
    c.all_patch_size = j.get_int_list("all_patch_size", c.all_patch_size);
    c.all_f_patch_size = j.get_int_list("all_f_patch_size", c.all_f_patch_size);
    c.dim = j.get_int("dim", c.dim, 1, 1 << 20);
    c.n_refiner_layers = j.get_int("n_refiner_layers", c.n_refiner_layers, 0, 10000);
    c.n_heads = j.get_int("n_heads", c.n_heads, 1, 1 << 16);
    c.n_kv_heads = j.get_int("n_kv_heads", c.n_heads, 1, 1 << 16);
    c.norm_eps = j.get_float("norm_eps", c.norm_eps);
    if (!(c.norm_eps > 0)) j.bad("norm_eps", "= " + std::to_string(c.norm_eps) + " must be positive");
    c.qk_norm = j.get_bool("qk_norm", c.qk_norm);
  } catch (const Error& e) {
    std::string m = e.what();
    if (m.rfind("[controlnet]", 0) == 0) throw;
    fail("[controlnet] ", m);
  }
  auto bad = [&](const auto&... a) { fail("[controlnet] ", path, ": ", a...); };
  const auto& places = c.control_layers_places;
  if (places.empty() || places[0] != 0)
    bad("control_layers_places ", list_str(places),
        " must start with 0 (the first control layer takes the control context)");
  if (places.size() > 10000) bad("control_layers_places has ", places.size(), " entries");
  for (const auto* list : {&c.control_layers_places, &c.control_refiner_layers_places}) {
    std::set<int64_t> seen;
    for (int64_t v : *list)
      if (v < 0 || v > 10000 || !seen.insert(v).second)
        bad(list == &places ? "control_layers_places " : "control_refiner_layers_places ", list_str(*list), ": entry ",
            v, " is negative, too large or repeated");
  }
  if (c.all_patch_size.empty() || c.all_patch_size.size() != c.all_f_patch_size.size())
    bad("all_patch_size ", list_str(c.all_patch_size), " and all_f_patch_size ", list_str(c.all_f_patch_size),
        " must be non-empty lists of the same length");
  for (size_t i = 0; i < c.all_patch_size.size(); ++i)
    if (c.all_patch_size[i] < 1 || c.all_patch_size[i] > 64 || c.all_f_patch_size[i] < 1 || c.all_f_patch_size[i] > 64)
      bad("patch size ", c.all_patch_size[i], "-", c.all_f_patch_size[i], " is out of range [1, 64]");
  if (c.dim % c.n_heads != 0) bad("dim ", c.dim, " is not divisible by n_heads ", c.n_heads);
  if (!c.add_control_noise_refiner.empty() && int64_t(c.control_refiner_layers_places.size()) > c.refiner_hints())
    bad("control_refiner_layers_places ", list_str(c.control_refiner_layers_places), " has more entries than the ",
        c.refiner_hints(), " hints of its ", c.add_control_noise_refiner, " (add_control_noise_refiner)");
  return c;
}

int64_t ZImageControlNetConfig::refiner_hints() const {
  if (add_control_noise_refiner == "control_layers") return int64_t(control_layers_places.size());
  if (add_control_noise_refiner == "control_noise_refiner") return n_refiner_layers;
  return 0;
}

ZImageTransformerConfig ZImageControlNetConfig::block_config(const ZImageTransformerConfig& t) const {
  ZImageTransformerConfig b = t;
  b.dim = dim;
  b.n_heads = n_heads;
  b.n_kv_heads = n_kv_heads;
  b.norm_eps = norm_eps;
  b.qk_norm = qk_norm;
  return b;
}

void ZImageControlNetConfig::check_compatible(const ZImageTransformerConfig& t, const std::string& origin) const {
  auto bad = [&](const auto&... a) {
    fail("[controlnet] ", origin, ": this ControlNet does not match the transformer: ", a...);
  };
  if (dim != t.dim) bad("dim ", dim, " != the transformer's dim ", t.dim);
  if (n_heads != t.n_heads) bad("n_heads ", n_heads, " != the transformer's n_heads ", t.n_heads);
  for (size_t i = 0; i < t.all_patch_size.size(); ++i) {
    bool found = false;
    for (size_t k = 0; k < all_patch_size.size(); ++k)
      found = found || (all_patch_size[k] == t.all_patch_size[i] && all_f_patch_size[k] == t.all_f_patch_size[i]);
    if (!found)
      bad("it has no control_all_x_embedder for the transformer's patch size ",
          ZImageTransformerConfig::patch_key(t.all_patch_size[i], t.all_f_patch_size[i]));
  }
  if (control_in_dim < t.in_channels)
    bad("control_in_dim ", control_in_dim, " is below the transformer's in_channels ", t.in_channels);
  for (int64_t v : control_layers_places)
    if (v >= t.n_layers)
      bad("control_layers_places ", list_str(control_layers_places), " names layer ", v, " but the transformer has ",
          t.n_layers, " layers");
  if (!add_control_noise_refiner.empty())
    for (int64_t v : control_refiner_layers_places)
      if (v >= t.n_refiner_layers)
        bad("control_refiner_layers_places ", list_str(control_refiner_layers_places), " names noise_refiner layer ", v,
            " but the transformer has ", t.n_refiner_layers);
}

namespace transformer {

ControlBlock::ControlBlock(const WeightLoader& w, const std::string& prefix, const ZImageTransformerConfig& cfg,
                           bool first)
    : first_(first), block_(w, prefix, cfg, /*modulation=*/true) {
  if (first) {
    before_w_ = w.linear_weight(prefix + "before_proj.weight", cfg.dim, cfg.dim);
    before_b_ = w.f32(prefix + "before_proj.bias", {cfg.dim});
  }
  after_w_ = w.linear_weight(prefix + "after_proj.weight", cfg.dim, cfg.dim);
  after_b_ = w.f32(prefix + "after_proj.bias", {cfg.dim});
}

Tensor ControlBlock::forward(ops::Precision p, Tensor& c, const Tensor& x, const std::vector<int64_t>& rows,
                             const Tensor& rope, const Tensor& adaln, BlockBuffers& buf) const {
  if (first_) {  // c = before_proj(c) + x
    Tensor b = weights::linear(c, before_w_, &before_b_);
    ops::store_(p, b);
    ZI_ASSERT(b.numel() == x.numel());
    ops::gate_add_(p, b, Tensor(), x, rows);  // b = b + x, stored
    c = b;
  }
  c = block_.forward(p, c, rows, rope, adaln, buf);
  Tensor hint = weights::linear(c, after_w_, &after_b_);  // c_skip
  ops::store_(p, hint);
  return hint;
}

}  // namespace transformer

std::vector<TensorSpec> ZImageControlNetModel::expected_tensors(const ZImageControlNetConfig& c,
                                                                const ZImageTransformerConfig& t) {
  std::vector<TensorSpec> s;
  const ZImageTransformerConfig bc = c.block_config(t);
  auto add = [&](const std::string& name, Shape shape) { s.push_back({name, std::move(shape)}); };
  auto control_block = [&](const std::string& p, bool first) {
    transformer::block_tensor_specs(s, p, bc, true);
    if (first) {
      add(p + "before_proj.weight", {c.dim, c.dim});
      add(p + "before_proj.bias", {c.dim});
    }
    add(p + "after_proj.weight", {c.dim, c.dim});
    add(p + "after_proj.bias", {c.dim});
  };
  for (size_t i = 0; i < c.all_patch_size.size(); ++i) {
    const int64_t p = c.all_patch_size[i], f = c.all_f_patch_size[i];
    const std::string key = ZImageTransformerConfig::patch_key(p, f);
    add("control_all_x_embedder." + key + ".weight", {c.dim, f * p * p * c.control_in_dim});
    add("control_all_x_embedder." + key + ".bias", {c.dim});
  }
  for (size_t i = 0; i < c.control_layers_places.size(); ++i)
    control_block("control_layers." + std::to_string(i) + ".", c.control_layers_places[i] == 0);
  for (int64_t i = 0; i < c.n_refiner_layers; ++i) {
    const std::string p = "control_noise_refiner." + std::to_string(i) + ".";
    if (c.add_control_noise_refiner == "control_noise_refiner")
      control_block(p, i == 0);
    else if (c.add_control_noise_refiner.empty())
      transformer::block_tensor_specs(s, p, bc, true);
  }
  return s;
}

WeightStore ZImageControlNetModel::open_weights(const std::string& path, const ZImageControlNetConfig& c,
                                                const ZImageTransformerConfig& t) {
  return with_component("controlnet", [&] {
    std::error_code ec;
    WeightStore ws =
        std::filesystem::is_regular_file(path, ec) ? WeightStore::open_file(path) : WeightStore::open_dir(path);
    // Union 2.0's zeroed control_noise_refiner of a "control_layers" ControlNet: dropped, as
    // diffusers' single-file conversion drops it.
    if (c.add_control_noise_refiner == "control_layers")
      for (const std::string& n : ws.names())
        if (n.rfind("control_noise_refiner.", 0) == 0) ws.hide(n);
    ws.check(expected_tensors(c, t));
    return ws;
  });
}

ZImageControlNetModel ZImageControlNetModel::load(const std::string& dir, DType compute,
                                                  const ZImageTransformerConfig& t) {
  const std::string cfg_path = dir + "/config.json";
  const ZImageControlNetConfig c = ZImageControlNetConfig::load(cfg_path);
  c.check_compatible(t, cfg_path);
  return load(dir, c, compute, t);
}

ZImageControlNetModel ZImageControlNetModel::load(const std::string& path, const ZImageControlNetConfig& config,
                                                  DType compute, const ZImageTransformerConfig& t) {
  if (compute != DType::F32 && compute != DType::BF16)
    fail("[controlnet] compute dtype ", dtype_name(compute), " is not supported (use float32 or bfloat16)");
  ZImageControlNetModel m;
  m.cfg_ = config;
  m.cfg_.check_compatible(t, path);
  m.compute_ = compute;
  m.store_ = std::make_shared<WeightStore>(open_weights(path, m.cfg_, t));
  const auto& c = m.cfg_;
  const ZImageTransformerConfig bc = c.block_config(t);
  transformer::WeightLoader w(*m.store_, compute, "controlnet");
  for (size_t i = 0; i < c.all_patch_size.size(); ++i) {
    const int64_t p = c.all_patch_size[i], f = c.all_f_patch_size[i];
    const std::string key = ZImageTransformerConfig::patch_key(p, f);
    m.x_embedder_w_[key] =
        w.linear_weight("control_all_x_embedder." + key + ".weight", c.dim, f * p * p * c.control_in_dim);
    m.x_embedder_b_[key] = w.f32("control_all_x_embedder." + key + ".bias", {c.dim});
  }
  for (size_t i = 0; i < c.control_layers_places.size(); ++i)
    m.control_layers_.emplace_back(w, "control_layers." + std::to_string(i) + ".", bc, c.control_layers_places[i] == 0);
  for (int64_t i = 0; i < c.n_refiner_layers; ++i) {
    const std::string p = "control_noise_refiner." + std::to_string(i) + ".";
    if (c.add_control_noise_refiner == "control_noise_refiner")
      m.control_refiner_.emplace_back(w, p, bc, i == 0);
    else if (c.add_control_noise_refiner.empty())
      m.plain_refiner_.emplace_back(w, p, bc, /*modulation=*/true);
  }
  return m;
}

}  // namespace zimage
