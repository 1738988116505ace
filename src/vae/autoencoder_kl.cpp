#include "vae/autoencoder_kl.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace zimage {

AutoencoderKL AutoencoderKL::load(const std::string& dir, DType compute, const std::string& weights_file) {
  if (compute != DType::F32 && compute != DType::BF16)
    fail("[vae] compute dtype must be float32 or bfloat16, got ", dtype_name(compute));
  return load_with_config(AutoencoderKLConfig::load((std::filesystem::path(dir) / "config.json").string()), dir,
                          compute, weights_file);
}

AutoencoderKL AutoencoderKL::load_with_config(const AutoencoderKLConfig& cfg, const std::string& dir, DType compute,
                                              const std::string& weights_file) {
  if (compute != DType::F32 && compute != DType::BF16)
    fail("[vae] compute dtype must be float32 or bfloat16, got ", dtype_name(compute));
  AutoencoderKL m;
  m.cfg_ = cfg;
  m.compute_ = compute;
  m.prec_ = ops::Precision::of(compute, "vae");
  WeightStore ws = open_weights(dir, m.cfg_, weights_file);
  vae::Loader l(ws, compute, "vae");
  m.encoder_.load(l, m.cfg_, "encoder");
  m.decoder_.load(l, m.cfg_, "decoder");
  const int64_t L = m.cfg_.latent_channels;
  if (m.cfg_.use_quant_conv) m.quant_conv_.load(l, "quant_conv", 2 * L, 2 * L, 1, 1, {});
  if (m.cfg_.use_post_quant_conv) m.post_quant_conv_.load(l, "post_quant_conv", L, L, 1, 1, {});
  return m;
}

std::vector<TensorSpec> AutoencoderKL::expected_tensors(const AutoencoderKLConfig& c) {
  std::vector<TensorSpec> s;
  const int64_t k3 = 3, L = c.latent_channels;
  auto conv = [&](const std::string& p, int64_t in, int64_t out, int64_t k) {  // Conv2d
    s.push_back({p + ".weight", {out, in, k, k}});
    s.push_back({p + ".bias", {out}});
  };
  auto vec2 = [&](const std::string& p, int64_t n) {  // GroupNorm, Linear bias
    s.push_back({p + ".weight", {n}});
    s.push_back({p + ".bias", {n}});
  };
  auto resnet = [&](const std::string& p, int64_t in, int64_t out) {  // ResnetBlock2D
    vec2(p + ".norm1", in);
    conv(p + ".conv1", in, out, k3);
    vec2(p + ".norm2", out);
    conv(p + ".conv2", out, out, k3);
    if (in != out) conv(p + ".conv_shortcut", in, out, 1);
  };
  auto mid = [&](const std::string& p, int64_t ch) {  // UNetMidBlock2D
    resnet(p + ".resnets.0", ch, ch);
    if (c.mid_block_add_attention) {
      vec2(p + ".attentions.0.group_norm", ch);
      for (const char* k : {"to_q", "to_k", "to_v", "to_out.0"}) {
        s.push_back({p + ".attentions.0." + k + ".weight", {ch, ch}});
        s.push_back({p + ".attentions.0." + k + ".bias", {ch}});
      }
    }
    resnet(p + ".resnets.1", ch, ch);
  };
  const auto& boc = c.block_out_channels;
  const size_t n = boc.size();
  // Encoder
  conv("encoder.conv_in", c.in_channels, boc.front(), k3);
  for (size_t i = 0; i < n; ++i) {
    const std::string bp = "encoder.down_blocks." + std::to_string(i);
    const int64_t in_ch = i == 0 ? boc[0] : boc[i - 1], out_ch = boc[i];
    for (int64_t j = 0; j < c.layers_per_block; ++j)
      resnet(bp + ".resnets." + std::to_string(j), j == 0 ? in_ch : out_ch, out_ch);
    if (i + 1 < n) conv(bp + ".downsamplers.0.conv", out_ch, out_ch, k3);
  }
  mid("encoder.mid_block", boc.back());
  vec2("encoder.conv_norm_out", boc.back());
  conv("encoder.conv_out", boc.back(), 2 * L, k3);
  // Decoder
  conv("decoder.conv_in", L, boc.back(), k3);
  mid("decoder.mid_block", boc.back());
  for (size_t i = 0; i < n; ++i) {
    const std::string bp = "decoder.up_blocks." + std::to_string(i);
    const int64_t prev_ch = boc[n - (i == 0 ? 1 : i)], out_ch = boc[n - 1 - i];
    for (int64_t j = 0; j <= c.layers_per_block; ++j)
      resnet(bp + ".resnets." + std::to_string(j), j == 0 ? prev_ch : out_ch, out_ch);
    if (i + 1 < n) conv(bp + ".upsamplers.0.conv", out_ch, out_ch, k3);
  }
  vec2("decoder.conv_norm_out", boc.front());
  conv("decoder.conv_out", boc.front(), c.out_channels, k3);
  if (c.use_quant_conv) conv("quant_conv", 2 * L, 2 * L, 1);
  if (c.use_post_quant_conv) conv("post_quant_conv", L, L, 1);
  return s;
}

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// "12.rest" -> 12 and "rest"; false when `s` does not start with a number and a dot.
bool take_index(const std::string& s, int64_t* idx, std::string* rest) {
  size_t i = 0;
  while (i < s.size() && i < 4 && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == 0 || i >= s.size() || s[i] != '.') return false;
  *idx = std::stoll(s.substr(0, i));
  *rest = s.substr(i + 1);
  return true;
}

std::string resnet_rest(std::string r) {
  if (starts_with(r, "nin_shortcut.")) r = "conv_shortcut." + r.substr(13);
  return r;
}

// One LDM key (without its prefix) -> diffusers' key, or "" when diffusers' conversion drops it.
std::string ldm_to_diffusers(const std::string& k, int64_t n_blocks) {
  for (const char* top : {"quant_conv.", "post_quant_conv."})
    if (starts_with(k, top)) return k;
  std::string part;
  if (starts_with(k, "encoder."))
    part = "encoder";
  else if (starts_with(k, "decoder."))
    part = "decoder";
  else
    return "";
  const std::string r = k.substr(part.size() + 1), p = part + ".";
  for (const char* same : {"conv_in.", "conv_out."})
    if (starts_with(r, same)) return k;
  if (starts_with(r, "norm_out.")) return p + "conv_norm_out." + r.substr(9);
  int64_t i = 0, j = 0;
  std::string rest, rest2;
  if (part == "encoder" && starts_with(r, "down.") && take_index(r.substr(5), &i, &rest) && i < n_blocks) {
    const std::string b = p + "down_blocks." + std::to_string(i) + ".";
    if (starts_with(rest, "block.") && take_index(rest.substr(6), &j, &rest2))
      return b + "resnets." + std::to_string(j) + "." + resnet_rest(rest2);
    if (starts_with(rest, "downsample.conv.")) return b + "downsamplers.0.conv." + rest.substr(16);
    return "";
  }
  if (part == "decoder" && starts_with(r, "up.") && take_index(r.substr(3), &i, &rest) && i < n_blocks) {
    const std::string b = p + "up_blocks." + std::to_string(n_blocks - 1 - i) + ".";
    if (starts_with(rest, "block.") && take_index(rest.substr(6), &j, &rest2))
      return b + "resnets." + std::to_string(j) + "." + resnet_rest(rest2);
    if (starts_with(rest, "upsample.conv.")) return b + "upsamplers.0.conv." + rest.substr(14);
    return "";
  }
  if (starts_with(r, "mid.block_1.")) return p + "mid_block.resnets.0." + resnet_rest(r.substr(12));
  if (starts_with(r, "mid.block_2.")) return p + "mid_block.resnets.1." + resnet_rest(r.substr(12));
  if (starts_with(r, "mid.attn_1.")) {
    static const std::pair<const char*, const char*> kAttn[] = {
        {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."}};
    const std::string a = r.substr(11);
    for (auto& [from, to] : kAttn)
      if (starts_with(a, from)) return p + "mid_block.attentions.0." + to + a.substr(std::string(from).size());
  }
  return "";
}

}  // namespace

void AutoencoderKL::convert_ldm_layout(WeightStore& ws, const AutoencoderKLConfig& c) {
  const std::vector<std::string> names = ws.names();
  std::string prefix;  // diffusers' LDM_VAE_KEYS, the last one present wins
  for (const char* p : {"first_stage_model.", "vae."})
    for (const std::string& n : names)
      if (starts_with(n, p)) prefix = p;
  bool ldm = false;
  for (const std::string& n : names) {
    if (!starts_with(n, prefix)) continue;
    const std::string k = n.substr(prefix.size());
    for (const char* mark :
         {"encoder.down.", "decoder.up.", "encoder.mid.", "decoder.mid.", "encoder.norm_out.", "decoder.norm_out."})
      ldm = ldm || starts_with(k, mark);
  }
  if (!ldm) return;
  const int64_t n_blocks = int64_t(c.block_out_channels.size());
  for (const std::string& n : names) {
    if (!starts_with(n, prefix)) continue;
    const std::string d = ldm_to_diffusers(n.substr(prefix.size()), n_blocks);
    if (d.empty()) {
      ws.hide(n);
      continue;
    }
    const Shape s = ws.info(n).shape;
    const bool attn_weight = d.find(".attentions.0.") != std::string::npos &&
                             d.find("group_norm") == std::string::npos && d.size() > 7 &&
                             d.compare(d.size() - 7, 7, ".weight") == 0;
    // conv_attn_to_linear: [C, C, 1, 1] (or [C, C, 1]) -> [C, C]
    if (attn_weight && (s.size() == 3 || s.size() == 4) && shape_numel(s) == s[0] * s[1])
      ws.alias_reshaped(n, d, {s[0], s[1]});
    else if (d != n)
      ws.alias(n, d);
  }
}

WeightStore AutoencoderKL::open_weights(const std::string& dir, const AutoencoderKLConfig& c,
                                        const std::string& weights_file) {
  return with_component("vae", [&] {
    WeightStore ws = weights_file.empty() ? WeightStore::open_dir(dir) : WeightStore::open_file(weights_file);
    if (!weights_file.empty()) convert_ldm_layout(ws, c);
    ws.check(expected_tensors(c));
    return ws;
  });
}

Tensor AutoencoderKL::latents_to_vae_space(const Tensor& latents) const {
  Tensor z = latents.to(DType::F32).clone();
  ops::store_(prec_, z);  // latents.to(vae.dtype)
  const float sf = float(cfg_.scaling_factor);
  // torch rounds a python scalar added to a bf16 tensor to bf16 first.
  const ops::Precision prec = prec_;
  const float shift = prec.store(float(cfg_.shift_factor));
  float* p = z.f32();
  const int64_t n = z.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = prec.store(prec.store(p[i] / sf) + shift);
  return z;
}

Tensor AutoencoderKL::check_latents(const Tensor& z) const {
  if (z.ndim() != 4)
    fail("[vae] decode: latents must be [B, ", cfg_.latent_channels, ", h, w], got ", shape_str(z.shape()));
  if (z.dim(1) != cfg_.latent_channels)
    fail("[vae] decode: latents have ", z.dim(1), " channels, the VAE expects latent_channels = ", cfg_.latent_channels,
         " (shape ", shape_str(z.shape()), ")");
  if (z.dim(0) < 1 || z.dim(2) < 1 || z.dim(3) < 1) fail("[vae] decode: empty latents ", shape_str(z.shape()));
  return ops::stored(prec_, z);  // z.to(vae.dtype)
}

Tensor AutoencoderKL::decode_untiled(const Tensor& z) const {
  Tensor x = check_latents(z);
  if (cfg_.use_post_quant_conv) x = post_quant_conv_.forward(x, prec_);
  return decoder_.forward(x, prec_);
}

size_t AutoencoderKL::decode_working_bytes(int64_t B, int64_t h, int64_t w) const {
  // The largest live set: a resnet / upsample step holds its input, the norm output and the
  // convolution's reordered source, result and output, plus a bf16 copy and oneDNN's scratchpad:
  // counted as 8 tensors of the stage's widest channel count at its resolution (measured peak
  // on the tiny fixture: about 6.7); the mid-block attention
  // holds q, k, v, the output and a [rows, S] score block.
  const auto& boc = cfg_.block_out_channels;
  const int64_t n = int64_t(boc.size());
  double area = double(h) * double(w), peak = 0;
  peak = std::max(peak, double(boc.back()) * area);
  int64_t prev = boc.back();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t out = boc[size_t(n - 1 - i)];
    peak = std::max(peak, double(std::max(prev, out)) * area);
    if (i != n - 1) {
      area *= 4;
      peak = std::max(peak, double(out) * area);
    }
    prev = out;
  }
  const double conv_bytes = 8.0 * peak * 4.0 * double(B);
  const double attn_bytes = cfg_.mid_block_add_attention
                                ? 6.0 * double(boc.back()) * double(h) * double(w) * 4.0 * double(B) + double(64 << 20)
                                : 0.0;
  return size_t(std::max(conv_bytes, attn_bytes));
}

int64_t AutoencoderKL::seamless_tile_size(int64_t B, int64_t h, int64_t w, size_t budget_bytes) const {
  const int64_t halo = decoder_.up_receptive_halo();
  // Besides the tiles: the output image and the head (conv_in and the mid block on the whole
  // latent: a few tensors of the widest channel count at latent resolution, and the attention).
  const double area = double(B) * double(h) * double(w);
  const double out = area * double(cfg_.spatial_scale() * cfg_.spatial_scale() * cfg_.out_channels) * 4.0;
  const double head = 6.0 * area * double(cfg_.block_out_channels.back()) * 4.0 + double(64 << 20);
  const double left = double(budget_bytes) - out - head;
  int64_t t = std::max<int64_t>(8, cfg_.tile_latent_min_size() / 8 * 8);
  auto tile_bytes = [&](int64_t k) {
    return double(decode_working_bytes(B, std::min(h, k + 2 * halo), std::min(w, k + 2 * halo)));
  };
  while (t > 8 && tile_bytes(t) > left) t -= 8;
  return t;
}

Tensor AutoencoderKL::decode(const Tensor& z, const VaeDecodeOptions& opt) const {
  check_latents(z);
  if (!(opt.tile_overlap_factor >= 0.0 && opt.tile_overlap_factor < 1.0))
    fail("[vae] tile_overlap_factor = ", opt.tile_overlap_factor, " must be in [0, 1)");
  if (opt.tile_latent_size < 0) fail("[vae] tile_latent_size = ", opt.tile_latent_size, " must be >= 0");
  size_t budget = opt.memory_budget_bytes;
  if (budget == 0) budget = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGESIZE)) / 2;
  bool tiled = opt.tiling == VaeDecodeOptions::Tiling::On;
  if (opt.tiling == VaeDecodeOptions::Tiling::Auto) tiled = decode_working_bytes(z.dim(0), z.dim(2), z.dim(3)) > budget;
  if (!tiled) return decode_untiled(z);
  if (opt.tile_mode == VaeDecodeOptions::TileMode::Diffusers) {
    const int64_t tile_latent = opt.tile_latent_size ? opt.tile_latent_size : cfg_.tile_latent_min_size();
    const int64_t tile_sample = opt.tile_latent_size ? opt.tile_latent_size * cfg_.spatial_scale() : cfg_.sample_size;
    // As diffusers' _decode: only latents larger than a tile are tiled.
    if (z.dim(2) > tile_latent || z.dim(3) > tile_latent)
      return decode_tiled(z, tile_latent, tile_sample, opt.tile_overlap_factor);
    return decode_untiled(z);
  }
  const int64_t tile =
      opt.tile_latent_size ? opt.tile_latent_size : seamless_tile_size(z.dim(0), z.dim(2), z.dim(3), budget);
  if (z.dim(2) > tile || z.dim(3) > tile) return decode_tiled_seamless(z, tile);
  return decode_untiled(z);
}

// ---- encode ----

LatentDistribution AutoencoderKL::encode(const Tensor& x) const {
  if (x.ndim() != 4 || x.dim(1) != cfg_.in_channels)
    fail("[vae] encode: images must be [B, ", cfg_.in_channels, ", H, W], got ", shape_str(x.shape()));
  if (x.dim(0) < 1 || x.dim(2) < 1 || x.dim(3) < 1) fail("[vae] encode: empty images ", shape_str(x.shape()));
  Tensor h = encoder_.forward(ops::stored(prec_, x), prec_);  // [B, 2L, h, w]
  if (cfg_.use_quant_conv) h = quant_conv_.forward(h, prec_);
  const int64_t B = h.dim(0), L = cfg_.latent_channels, hw = h.dim(2) * h.dim(3);
  LatentDistribution d;
  d.precision = prec_;
  d.mean = Tensor::empty(DType::F32, {B, L, h.dim(2), h.dim(3)});
  d.logvar = Tensor::empty(DType::F32, {B, L, h.dim(2), h.dim(3)});
  for (int64_t b = 0; b < B; ++b) {  // torch.chunk(parameters, 2, dim=1)
    const float* src = h.f32() + b * 2 * L * hw;
    std::copy(src, src + L * hw, d.mean.f32() + b * L * hw);
    float* lv = d.logvar.f32() + b * L * hw;
    for (int64_t i = 0; i < L * hw; ++i) lv[i] = std::clamp(src[L * hw + i], -30.f, 20.f);
  }
  return d;
}

Tensor LatentDistribution::std() const {
  Tensor s = Tensor::empty(DType::F32, logvar.shape());
  for (int64_t i = 0; i < s.numel(); ++i)
    s.f32()[i] = precision.store(std::exp(precision.store(0.5f * logvar.f32()[i])));
  return s;
}

Tensor LatentDistribution::sample(const Tensor& noise) const {
  if (noise.shape() != mean.shape())
    fail("[vae] sample: noise shape ", shape_str(noise.shape()), " does not match the latents ",
         shape_str(mean.shape()));
  Tensor n = noise.to(DType::F32);
  Tensor s = std(), out = Tensor::empty(DType::F32, mean.shape());
  const ops::Precision pr = precision;
  for (int64_t i = 0; i < out.numel(); ++i)
    out.f32()[i] = pr.store(mean.f32()[i] + pr.store(s.f32()[i] * pr.store(n.f32()[i])));
  return out;
}

Tensor LatentDistribution::sample(const std::function<Tensor(const Shape&)>& randn) const {
  return sample(randn(mean.shape()));
}

}  // namespace zimage
