#include "transformer/transformer_z_image.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "ops/ops.h"
#include "transformer/patchify.h"

namespace zimage {

struct ZImageTransformer2DModel::RunState {
  std::mutex mu;  // one forward at a time uses the buffers
  transformer::BlockBuffers buffers;
  // Caption cache: the padded caption features (exact bits) and the item lengths (tokens, padded
  // tokens) it was computed for.
  Tensor cap_in;
  std::vector<int64_t> cap_len, cap_rows;
  Tensor cap_out;  // [Cp, dim] after the context refiner
};

using transformer::PatchGrid;
using transformer::PosId;

ZImageTransformer2DModel ZImageTransformer2DModel::load(const std::string& dir, DType compute,
                                                        const std::string& weights_file,
                                                        const std::vector<weights::LoraSpec>& loras, Device device) {
  if (compute != DType::F32 && compute != DType::BF16)
    fail("[transformer] compute dtype ", dtype_name(compute), " is not supported (use float32 or bfloat16)");
  return load_with_config(ZImageTransformerConfig::load(dir + "/config.json"), dir, compute, weights_file, loras,
                          device);
}

ZImageTransformer2DModel ZImageTransformer2DModel::load_with_config(const ZImageTransformerConfig& cfg,
                                                                    const std::string& dir, DType compute,
                                                                    const std::string& weights_file,
                                                                    const std::vector<weights::LoraSpec>& loras,
                                                                    Device device) {
  if (compute != DType::F32 && compute != DType::BF16)
    fail("[transformer] compute dtype ", dtype_name(compute), " is not supported (use float32 or bfloat16)");
  ZImageTransformer2DModel m;
  m.cfg_ = cfg;
  m.compute_ = compute;
  m.prec_ = ops::Precision::of(compute, "transformer");
  m.store_ = std::make_shared<WeightStore>(open_weights(dir, m.cfg_, weights_file));
  const auto& c = m.cfg_;
  m.device_ = device;
  transformer::WeightLoader w(*m.store_, compute, "transformer");
  w.set_device(device);
  const weights::LoraSet lora = weights::LoraSet::load(loras, expected_tensors(c));
  if (!lora.empty()) w.set_lora(&lora);
  m.lora_slots_ = std::make_shared<weights::LoraSlots>();
  w.set_lora_slots(m.lora_slots_.get());

  for (size_t i = 0; i < c.all_patch_size.size(); ++i) {
    const int64_t p = c.all_patch_size[i], f = c.all_f_patch_size[i];
    const std::string key = ZImageTransformerConfig::patch_key(p, f);
    m.x_embedder_w_[key] = w.linear_weight("all_x_embedder." + key + ".weight", c.dim, f * p * p * c.in_channels);
    m.x_embedder_b_[key] = w.f32("all_x_embedder." + key + ".bias", {c.dim});
    m.final_layer_[key] =
        transformer::FinalLayer(w, "all_final_layer." + key + ".", c.dim, p * p * f * c.out_channels(), c.adaln_dim());
  }
  for (int64_t i = 0; i < c.n_refiner_layers; ++i)
    m.noise_refiner_.emplace_back(w, "noise_refiner." + std::to_string(i) + ".", c, /*modulation=*/true);
  for (int64_t i = 0; i < c.n_refiner_layers; ++i)
    m.context_refiner_.emplace_back(w, "context_refiner." + std::to_string(i) + ".", c, /*modulation=*/false);
  m.t_embedder_ = transformer::TimestepEmbedder(w, "t_embedder.", c.adaln_dim(), ZImageTransformerConfig::kTimestepMid,
                                                ZImageTransformerConfig::kFrequencyEmbedding);
  m.cap_norm_w_ = w.f32("cap_embedder.0.weight", {c.cap_feat_dim});
  m.cap_linear_w_ = w.linear_weight("cap_embedder.1.weight", c.dim, c.cap_feat_dim);
  m.cap_linear_b_ = w.f32("cap_embedder.1.bias", {c.dim});
  m.x_pad_token_ = w.f32("x_pad_token", {1, c.dim}).to_vector();
  m.cap_pad_token_ = w.f32("cap_pad_token", {1, c.dim}).to_vector();
  for (int64_t i = 0; i < c.n_layers; ++i)
    m.layers_.emplace_back(w, "layers." + std::to_string(i) + ".", c, /*modulation=*/true);
  lora.check_all_merged("transformer");
  m.rope_ = std::make_shared<transformer::RopeEmbedder>(c.rope_theta, c.axes_dims, c.axes_lens);
  m.run_ = std::make_shared<RunState>();
  return m;
}

void ZImageTransformer2DModel::lora_changed() {
  std::lock_guard<std::mutex> lock(run_->mu);
  run_->cap_out = Tensor();
  run_->cap_in = Tensor();
}

std::vector<TensorSpec> ZImageTransformer2DModel::expected_tensors(const ZImageTransformerConfig& c) {
  std::vector<TensorSpec> s;
  auto add = [&](const std::string& name, Shape shape) { s.push_back({name, std::move(shape)}); };
  const int64_t dim = c.dim, adaln = c.adaln_dim();
  auto block = [&](const std::string& p, bool modulation) { transformer::block_tensor_specs(s, p, c, modulation); };
  for (size_t i = 0; i < c.all_patch_size.size(); ++i) {
    const int64_t p = c.all_patch_size[i], f = c.all_f_patch_size[i], out = p * p * f * c.out_channels();
    const std::string key = ZImageTransformerConfig::patch_key(p, f);
    add("all_x_embedder." + key + ".weight", {dim, f * p * p * c.in_channels});
    add("all_x_embedder." + key + ".bias", {dim});
    add("all_final_layer." + key + ".linear.weight", {out, dim});  // FinalLayer
    add("all_final_layer." + key + ".linear.bias", {out});
    add("all_final_layer." + key + ".adaLN_modulation.1.weight", {dim, adaln});
    add("all_final_layer." + key + ".adaLN_modulation.1.bias", {dim});
  }
  for (int64_t i = 0; i < c.n_refiner_layers; ++i) block("noise_refiner." + std::to_string(i) + ".", true);
  for (int64_t i = 0; i < c.n_refiner_layers; ++i) block("context_refiner." + std::to_string(i) + ".", false);
  const int64_t mid = ZImageTransformerConfig::kTimestepMid, freq = ZImageTransformerConfig::kFrequencyEmbedding;
  add("t_embedder.mlp.0.weight", {mid, freq});  // TimestepEmbedder
  add("t_embedder.mlp.0.bias", {mid});
  add("t_embedder.mlp.2.weight", {adaln, mid});
  add("t_embedder.mlp.2.bias", {adaln});
  add("cap_embedder.0.weight", {c.cap_feat_dim});
  add("cap_embedder.1.weight", {dim, c.cap_feat_dim});
  add("cap_embedder.1.bias", {dim});
  add("x_pad_token", {1, dim});
  add("cap_pad_token", {1, dim});
  for (int64_t i = 0; i < c.n_layers; ++i) block("layers." + std::to_string(i) + ".", true);
  return s;
}

namespace {
bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
void replace_all(std::string& s, const std::string& a, const std::string& b) {
  for (size_t i = s.find(a); i != std::string::npos; i = s.find(a, i + b.size())) s.replace(i, a.size(), b);
}
}  // namespace

// diffusers' convert_z_image_transformer_checkpoint_to_diffusers (single_file_utils.py): the
// original / ComfyUI key layout ("model.diffusion_model." or "diffusion_model." prefix,
// x_embedder., final_layer., attention.qkv fused, attention.out, q_norm/k_norm, norm_final) is
// exposed under diffusers' names; the fused qkv becomes row ranges of the stored tensor (no copy,
// quantized ones too).
void ZImageTransformer2DModel::convert_original_layout(WeightStore& ws) {
  bool original = false;
  for (const std::string& n : ws.names())
    original = original || starts_with(n, "model.diffusion_model.") || starts_with(n, "diffusion_model.") ||
               starts_with(n, "x_embedder.") || starts_with(n, "final_layer.") || ends_with(n, ".attention.qkv.weight");
  if (!original) return;
  static const std::pair<const char*, const char*> kRename[] = {
      {"final_layer.", "all_final_layer.2-1."},
      {"x_embedder.", "all_x_embedder.2-1."},
      {".attention.out.bias", ".attention.to_out.0.bias"},
      {".attention.k_norm.weight", ".attention.norm_k.weight"},
      {".attention.q_norm.weight", ".attention.norm_q.weight"},
      {".attention.out.weight", ".attention.to_out.0.weight"},
      {"model.diffusion_model.", ""},
  };
  for (const std::string& name : ws.names()) {
    std::string n = name;
    for (auto& [a, b] : kRename) replace_all(n, a, b);
    if (starts_with(n, "diffusion_model.")) n = n.substr(16);  // ComfyUI's prefix without "model."
    if (n == "norm_final.weight") {
      ws.hide(name);
      continue;
    }
    const std::string qkv = ".attention.qkv.weight";
    if (ends_with(n, qkv)) {
      const Shape s = ws.info(name).shape;
      if (s.size() != 2 || s[0] % 3 != 0)
        fail("[transformer] weights: ", ws.source(), ": fused '", name, "' has shape ", shape_str(s),
             ", expected [3 * dim, dim]");
      const std::string p = n.substr(0, n.size() - qkv.size()) + ".attention.";
      const int64_t r = s[0] / 3;
      ws.alias(name, p + "to_q.weight", 0, r);
      ws.alias(name, p + "to_k.weight", r, r);
      ws.alias(name, p + "to_v.weight", 2 * r, r);
      continue;
    }
    if (n != name) ws.alias(name, n);
  }
}

WeightStore ZImageTransformer2DModel::open_weights(const std::string& dir, const ZImageTransformerConfig& c,
                                                   const std::string& weights_file) {
  return with_component("transformer", [&] {
    WeightStore ws = weights_file.empty() ? WeightStore::open_dir(dir) : WeightStore::open_file(weights_file);
    convert_original_layout(ws);
    for (const char* pad : {"x_pad_token", "cap_pad_token"})
      if (!ws.has(pad))
        fail("[transformer] weights: ", ws.source(), ": missing pad token '", pad,
             "' (needed to pad sequences to a multiple of ", ZImageTransformerConfig::kSeqMultiOf, ")");
    ws.check(expected_tensors(c));
    return ws;
  });
}

namespace {

int64_t padded(int64_t n) {
  return n + (-n % ZImageTransformerConfig::kSeqMultiOf + ZImageTransformerConfig::kSeqMultiOf) %
                 ZImageTransformerConfig::kSeqMultiOf;
}

// Copies rows [src_row, src_row + n) of src ([*, D]) to rows starting at dst_row of dst.
void copy_rows(Tensor& dst, int64_t dst_row, const Tensor& src, int64_t src_row, int64_t n) {
  const int64_t D = src.numel() / std::max<int64_t>(src.dim(0), 1);
  ZI_ASSERT(dst.numel() / std::max<int64_t>(dst.dim(0), 1) == D);
  if (n > 0) dst.slice0(dst_row, dst_row + n).copy_from(src.slice0(src_row, src_row + n));
}

void fill_rows(Tensor& dst, int64_t row0, int64_t n, const std::vector<float>& value) {
  if (n <= 0) return;
  const Tensor row = Tensor::from_f32({1, int64_t(value.size())}, value).to(dst.device());
  for (int64_t r = row0; r < row0 + n; ++r) dst.slice0(r, r + 1).copy_from(row);
}

}  // namespace

void ZImageTransformer2DModel::set_precision(ops::Precision p) {
  if (p.storage() != compute_)
    fail("[transformer] a ", dtype_name(p.storage()), " precision does not fit a model loaded for ",
         dtype_name(compute_), " compute");
  std::lock_guard<std::mutex> lock(run_->mu);
  prec_ = p;
  run_->cap_out = Tensor();  // computed with the old precision
}

std::vector<Tensor> ZImageTransformer2DModel::forward(const std::vector<Tensor>& x, const std::vector<float>& t,
                                                      const std::vector<Tensor>& cap, int64_t patch_size,
                                                      int64_t f_patch_size, const ControlInput* control) const {
  const auto& c = cfg_;
  const ops::Precision p = prec_;
  const int64_t B = int64_t(x.size()), dim = c.dim;
  if (B == 0) fail("[transformer] forward: no latents given");
  if (int64_t(cap.size()) != B)
    fail("[transformer] forward: ", B, " latents but ", cap.size(), " caption feature tensors");
  if (int64_t(t.size()) != B) fail("[transformer] forward: ", B, " latents but ", t.size(), " timesteps");
  if (!c.has_patch(patch_size, f_patch_size))
    fail("[transformer] forward: patch size ", ZImageTransformerConfig::patch_key(patch_size, f_patch_size),
         " is not in the model's all_x_embedder");
  const std::string key = ZImageTransformerConfig::patch_key(patch_size, f_patch_size);
  std::lock_guard<std::mutex> lock(run_->mu);
  transformer::BlockBuffers& buffers = run_->buffers;

  // Validate the inputs and lay out the tokens of every item.
  std::vector<PatchGrid> grids(static_cast<size_t>(B));
  std::vector<int64_t> x_len(static_cast<size_t>(B)), x_pad_len(static_cast<size_t>(B)),
      cap_len(static_cast<size_t>(B)), cap_pad_len(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) {
    const Tensor& xi = x[size_t(i)];
    const Tensor& ci = cap[size_t(i)];
    if (xi.ndim() != 4 || xi.dtype() != DType::F32)
      fail("[transformer] latent ", i, " must be a float32 [C, F, H, W] tensor, got ", dtype_name(xi.dtype()), " ",
           shape_str(xi.shape()));
    if (xi.dim(0) != c.in_channels)
      fail("[transformer] latent ", i, " has ", xi.dim(0), " channels, the model takes in_channels = ", c.in_channels);
    PatchGrid& g = grids[size_t(i)];
    g = {xi.dim(0), xi.dim(1), xi.dim(2), xi.dim(3), f_patch_size, patch_size, patch_size};
    if (g.F <= 0 || g.H <= 0 || g.W <= 0) fail("[transformer] latent ", i, " is empty: ", shape_str(xi.shape()));
    if (g.H % g.pH || g.W % g.pW || g.F % g.pF)
      fail("[transformer] latent ", i, " size ", shape_str(xi.shape()),
           " (F, H, W) is not a multiple of the patch size (", g.pF, ", ", g.pH, ", ", g.pW, ")");
    if (ci.ndim() != 2 || ci.dtype() != DType::F32 || ci.dim(1) != c.cap_feat_dim)
      fail("[transformer] caption features ", i, " must be a float32 [L, ", c.cap_feat_dim, "] tensor, got ",
           dtype_name(ci.dtype()), " ", shape_str(ci.shape()));
    if (ci.dim(0) == 0) fail("[transformer] caption features ", i, " are empty (0 tokens)");
    x_len[size_t(i)] = g.tokens();
    x_pad_len[size_t(i)] = padded(g.tokens());
    cap_len[size_t(i)] = ci.dim(0);
    cap_pad_len[size_t(i)] = padded(ci.dim(0));
  }
  const ZImageControlNetModel* net = control ? control->net : nullptr;
  if (control && !net) fail("[controlnet] forward: a control input without a ControlNet");
  if (net) {
    if (int64_t(control->context.size()) != B)
      fail("[controlnet] forward: ", B, " latents but ", control->context.size(), " control contexts");
    if (!net->x_embedder_w_.count(key))
      fail("[controlnet] forward: patch size ", key, " is not in the ControlNet's control_all_x_embedder");
    for (int64_t i = 0; i < B; ++i) {
      const Tensor& ci = control->context[size_t(i)];
      const PatchGrid& g = grids[size_t(i)];
      if (ci.ndim() != 4 || ci.dtype() != DType::F32 || ci.dim(0) != net->cfg_.control_in_dim || ci.dim(1) != g.F ||
          ci.dim(2) != g.H || ci.dim(3) != g.W)
        fail("[controlnet] control context ", i, " must be a float32 [", net->cfg_.control_in_dim, ", ", g.F, ", ", g.H,
             ", ", g.W, "] tensor, got ", dtype_name(ci.dtype()), " ", shape_str(ci.shape()));
    }
  }

  // Timestep embedding: t_embedder(t * t_scale), one adaLN input per item.
  std::vector<float> ts(t.size());
  for (size_t i = 0; i < t.size(); ++i) ts[i] = t[i] * float(c.t_scale);
  Tensor adaln = t_embedder_.forward(p, ts);  // [B, adaln_dim]
  auto debug = [&](const std::string& name, const Tensor& v) {
    if (debug_) debug_(name, v);
  };
  debug("t_embedder", adaln);

  // Position ids (patchify_and_embed / _pad_with_ids): caption token j (pads included) at
  // (1 + j, 0, 0); image token (f, h, w) at (padded caption length + 1 + f, h, w); image pads at (0, 0, 0).
  int64_t X = 0, Cp = 0;
  for (int64_t i = 0; i < B; ++i) X += x_pad_len[size_t(i)], Cp += cap_pad_len[size_t(i)];
  std::vector<PosId> x_pos, cap_pos;
  x_pos.reserve(size_t(X));
  cap_pos.reserve(size_t(Cp));
  for (int64_t i = 0; i < B; ++i) {
    const PatchGrid& g = grids[size_t(i)];
    for (int64_t j = 0; j < cap_pad_len[size_t(i)]; ++j) cap_pos.push_back({1 + j, 0, 0});
    const int64_t f0 = cap_pad_len[size_t(i)] + 1;
    for (int64_t f = 0; f < g.f_tokens(); ++f)
      for (int64_t h = 0; h < g.h_tokens(); ++h)
        for (int64_t w = 0; w < g.w_tokens(); ++w) x_pos.push_back({f0 + f, h, w});
    for (int64_t j = x_len[size_t(i)]; j < x_pad_len[size_t(i)]; ++j) x_pos.push_back({0, 0, 0});
  }
  const Tensor x_rope = (*rope_)(x_pos).to(device_);      // [X, head_dim/2, 2]
  const Tensor cap_rope = (*rope_)(cap_pos).to(device_);  // [Cp, head_dim/2, 2]

  // X embed: patchify, all_x_embedder, pad rows := x_pad_token.
  const int64_t P = grids[0].patch_dim();
  Tensor patches = Tensor::zeros(DType::F32, {X, P});  // [X, pF*pH*pW*C]
  {
    int64_t row = 0;
    for (int64_t i = 0; i < B; ++i) {
      transformer::patchify(x[size_t(i)], grids[size_t(i)], patches.f32() + row * P);
      row += x_pad_len[size_t(i)];
    }
  }
  patches = patches.to(device_);
  ops::store_(p, patches);                                                              // latents.to(bfloat16)
  Tensor xt = weights::linear(patches, x_embedder_w_.at(key), &x_embedder_b_.at(key));  // [X, dim]
  ops::store_(p, xt);
  {
    int64_t row = 0;
    for (int64_t i = 0; i < B; ++i) {
      fill_rows(xt, row + x_len[size_t(i)], x_pad_len[size_t(i)] - x_len[size_t(i)], x_pad_token_);
      row += x_pad_len[size_t(i)];
    }
  }
  debug("x_embedder", xt);

  // ControlNet (ZImageControlNetModel.forward): the control context is embedded like x by its own
  // control_all_x_embedder; hints are scaled by the conditioning scale and added after the layers
  // their places name.
  const std::string variant = net ? net->cfg_.add_control_noise_refiner : std::string();
  Tensor cc, xc;  // control state [X, dim]; the ControlNet's own noise-refined x (with its refiner hints)
  auto scaled = [&](Tensor h) {
    const float sc = control->scale;
    for (int64_t k = 0; k < h.numel(); ++k) h.f32()[k] = p.store(h.f32()[k] * sc);
    return h;
  };
  auto add_into = [&](Tensor& dst, const Tensor& h) {
    ZI_ASSERT(dst.numel() == h.numel());
    float* d = dst.f32();
    const float* a = h.f32();
    for (int64_t k = 0; k < dst.numel(); ++k) d[k] = p.store(d[k] + a[k]);
  };
  if (net) {
    const int64_t CP = grids[0].pF * grids[0].pH * grids[0].pW * net->cfg_.control_in_dim;
    Tensor cp = Tensor::zeros(DType::F32, {X, CP});
    int64_t row = 0;
    for (int64_t i = 0; i < B; ++i) {
      PatchGrid g = grids[size_t(i)];
      g.C = net->cfg_.control_in_dim;
      transformer::patchify(control->context[size_t(i)], g, cp.f32() + row * CP);
      row += x_pad_len[size_t(i)];
    }
    ops::store_(p, cp);
    cc = weights::linear(cp, net->x_embedder_w_.at(key), &net->x_embedder_b_.at(key));  // [X, dim]
    ops::store_(p, cc);
    row = 0;
    for (int64_t i = 0; i < B; ++i) {
      fill_rows(cc, row + x_len[size_t(i)], x_pad_len[size_t(i)] - x_len[size_t(i)], x_pad_token_);
      row += x_pad_len[size_t(i)];
    }
    debug("controlnet.x_embedder", cc);
    if (!variant.empty()) {  // refiner stage over the image tokens, its hints into the ControlNet's noise refiner
      const auto& stage = variant == "control_layers" ? net->control_layers_ : net->control_refiner_;
      std::vector<Tensor> hints;
      for (const auto& b : stage) hints.push_back(b.forward(p, cc, xt, x_pad_len, x_rope, adaln, buffers));
      std::map<int64_t, Tensor> refiner_samples;
      for (size_t k = 0; k < net->cfg_.control_refiner_layers_places.size(); ++k)
        refiner_samples[net->cfg_.control_refiner_layers_places[k]] = scaled(hints[k]);
      xc = xt.clone();
      for (size_t l = 0; l < noise_refiner_.size(); ++l) {
        xc = noise_refiner_[l].forward(p, xc, x_pad_len, x_rope, adaln, buffers);
        if (auto it = refiner_samples.find(int64_t(l)); it != refiner_samples.end()) add_into(xc, it->second);
      }
      debug("controlnet.noise_refiner", xc);
    }
  }
  for (size_t l = 0; l < noise_refiner_.size(); ++l) {
    xt = noise_refiner_[l].forward(p, xt, x_pad_len, x_rope, adaln, buffers);
    debug("noise_refiner." + std::to_string(l), xt);
  }

  // Cap embed: RMSNorm + Linear, pad rows := cap_pad_token.
  Tensor capf = Tensor::zeros(DType::F32, {Cp, c.cap_feat_dim});  // [Cp, cap_feat_dim]
  {
    int64_t row = 0;
    for (int64_t i = 0; i < B; ++i) {
      copy_rows(capf, row, cap[size_t(i)], 0, cap_len[size_t(i)]);
      row += cap_pad_len[size_t(i)];
    }
  }
  ops::store_(p, capf);
  // The context refiner sees only the caption: a repeated caption (every denoising step) reuses
  // the last result, which is bit-identical to recomputing it. Not with a debug hook (it wants
  // every intermediate of every call).
  RunState& run = *run_;
  const bool cached = !debug_ && run.cap_out.defined() && run.cap_len == cap_len && run.cap_rows == cap_pad_len &&
                      run.cap_in.shape() == capf.shape() &&
                      std::memcmp(run.cap_in.raw(), capf.raw(), capf.nbytes()) == 0;
  Tensor ct;
  if (cached) {
    ct = run.cap_out;
  } else {
    ct = weights::linear(ops::rms_norm(p, capf.to(device_), cap_norm_w_, float(c.norm_eps)), cap_linear_w_,
                         &cap_linear_b_);  // [Cp, dim]
    ops::store_(p, ct);
    {
      int64_t row = 0;
      for (int64_t i = 0; i < B; ++i) {
        fill_rows(ct, row + cap_len[size_t(i)], cap_pad_len[size_t(i)] - cap_len[size_t(i)], cap_pad_token_);
        row += cap_pad_len[size_t(i)];
      }
    }
    debug("cap_embedder", ct);
    for (size_t l = 0; l < context_refiner_.size(); ++l) {
      ct = context_refiner_[l].forward(p, ct, cap_pad_len, cap_rope, Tensor(), buffers);
      debug("context_refiner." + std::to_string(l), ct);
    }
    run.cap_out = Tensor();  // never leave a half-updated cache behind an exception
    if (!debug_) {
      run.cap_in = capf, run.cap_len = cap_len, run.cap_rows = cap_pad_len, run.cap_out = ct;
    }
  }

  // Unified sequence per item: [image tokens (padded), caption tokens (padded)].
  const int64_t U = X + Cp;
  Tensor u_rope = Tensor::empty(DType::F32, {U, c.head_dim() / 2, 2}, device_);  // [U, head_dim/2, 2]
  std::vector<int64_t> u_len(static_cast<size_t>(B));
  auto unify = [&](const Tensor& image_rows) {  // [X, dim] image rows + the caption rows -> [U, dim]
    Tensor out = Tensor::empty(DType::F32, {U, dim}, device_);
    int64_t row = 0, xr = 0, cr = 0;
    for (int64_t i = 0; i < B; ++i) {
      const int64_t nx = x_pad_len[size_t(i)], nc = cap_pad_len[size_t(i)];
      copy_rows(out, row, image_rows, xr, nx);
      copy_rows(out, row + nx, ct, cr, nc);
      row += nx + nc, xr += nx, cr += nc;
    }
    return out;
  };
  Tensor u = unify(xt);  // [U, dim]
  {
    int64_t row = 0, xr = 0, cr = 0;
    for (int64_t i = 0; i < B; ++i) {
      const int64_t nx = x_pad_len[size_t(i)], nc = cap_pad_len[size_t(i)];
      copy_rows(u_rope, row, x_rope, xr, nx);
      copy_rows(u_rope, row + nx, cap_rope, cr, nc);
      u_len[size_t(i)] = nx + nc;
      row += nx + nc, xr += nx, cr += nc;
    }
  }
  // ControlNet: its control layers over [control context | caption] next to its own unified x
  // (the main one when it has no refiner hints); one hint per control layer.
  std::map<int64_t, Tensor> samples;
  if (net) {
    if (variant.empty())
      for (const auto& b : net->plain_refiner_) cc = b.forward(p, cc, x_pad_len, x_rope, adaln, buffers);
    Tensor ccu = unify(cc);
    const Tensor uc = variant.empty() ? u : unify(xc);
    for (size_t k = 0; k < net->control_layers_.size(); ++k) {
      samples[net->cfg_.control_layers_places[k]] =
          scaled(net->control_layers_[k].forward(p, ccu, uc, u_len, u_rope, adaln, buffers));
      debug("controlnet.hint." + std::to_string(net->cfg_.control_layers_places[k]),
            samples[net->cfg_.control_layers_places[k]]);
    }
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    u = layers_[l].forward(p, u, u_len, u_rope, adaln, buffers);
    if (auto it = samples.find(int64_t(l)); it != samples.end()) add_into(u, it->second);
    debug("layers." + std::to_string(l), u);
  }

  Tensor out = final_layer_.at(key).forward(p, u, u_len, adaln);  // [U, pH*pW*pF*C]
  debug("final_layer", out);
  out = out.to(Device::CPU);

  // Unpatchify the first x_len rows of every item.
  std::vector<Tensor> result;
  int64_t row = 0;
  for (int64_t i = 0; i < B; ++i) {
    result.push_back(transformer::unpatchify(out.f32() + row * P, grids[size_t(i)]));
    row += u_len[size_t(i)];
  }
  return result;
}

}  // namespace zimage
