// Config inference for single files (pipeline/single_file.h).
#include "pipeline/single_file.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "core/config.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/safetensors.h"
#include "text_encoder/qwen3_text_encoder.h"
#include "transformer/controlnet_z_image.h"
#include "transformer/transformer_z_image.h"
#include "vae/autoencoder_kl.h"

namespace zimage {

namespace {
bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// Shapes of a store by name, with errors naming the file and the tensor.
struct Shapes {
  const WeightStore& ws;
  std::string tag, file;
  std::string while_doing = "inferring the config from the file without -m";
  [[noreturn]] void bad(const std::string& what) const {
    fail("[", tag, "] ", file, ": ", what, " (", while_doing, ")");
  }
  bool has(const std::string& n) const { return ws.has(n); }
  Shape get(const std::string& n, size_t ndim) const {
    if (!ws.has(n)) bad("missing tensor '" + n + "'");
    const Shape s = ws.info(n).shape;
    if (s.size() != ndim)
      bad("tensor '" + n + "' has shape " + shape_str(s) + ", expected " + std::to_string(ndim) + " dimensions");
    return s;
  }
  // The number of consecutive indices i (from 0) for which prefix + i + suffix exists; another
  // index of the same prefix past the gap is an error naming the missing tensor.
  int64_t count(const std::string& prefix, const std::string& suffix) const {
    int64_t n = 0;
    while (ws.has(prefix + std::to_string(n) + suffix)) ++n;
    for (const std::string& name : ws.names()) {
      if (!starts_with(name, prefix)) continue;
      const std::string rest = name.substr(prefix.size());
      size_t k = 0;
      while (k < rest.size() && std::isdigit(static_cast<unsigned char>(rest[k]))) ++k;
      if (k == 0 || k > 9 || k >= rest.size() || rest[k] != '.') continue;
      if (std::stoll(rest.substr(0, k)) >= n)
        bad("has '" + name + "' but is missing tensor '" + prefix + std::to_string(n) + suffix + "'");
    }
    return n;
  }
};

int64_t divide(const Shapes& s, int64_t a, int64_t b, const std::string& what) {
  if (b <= 0 || a % b != 0) s.bad(what + ": " + std::to_string(a) + " is not a multiple of " + std::to_string(b));
  return a / b;
}

// The patch embedders `<pre>{p}-{f}.weight` ([rows, f*p*p*in]): their patch sizes, rows (checked
// against `dim` unless it is 0) and the one input width they imply (`in_what` names it).
struct PatchEmbedders {
  std::vector<int64_t> patch, f_patch;
  int64_t rows = 0, in = 0;
};
PatchEmbedders patch_embedders(const Shapes& s, const std::string& pre, int64_t dim, const std::string& dim_from,
                               const std::string& in_what) {
  PatchEmbedders e;
  e.rows = dim;
  std::set<int64_t> in;
  for (const std::string& n : s.ws.names()) {
    const std::string suf = ".weight";
    if (!starts_with(n, pre) || !ends_with(n, suf)) continue;
    const std::string key = n.substr(pre.size(), n.size() - pre.size() - suf.size());
    int64_t p = 0, f = 0;
    char dash = 0, extra = 0;
    if (std::sscanf(key.c_str(), "%ld%c%ld%c", &p, &dash, &f, &extra) != 3 || dash != '-' || p < 1 || p > 64 || f < 1 ||
        f > 64 || ZImageTransformerConfig::patch_key(p, f) != key)
      s.bad("tensor '" + n + "': '" + key + "' is not a patch key 'p-f'");
    const Shape w = s.get(n, 2);
    if (e.rows == 0) e.rows = w[0];
    if (w[0] != e.rows)
      s.bad("tensor '" + n + "' has shape " + shape_str(w) + ": " + std::to_string(w[0]) + " rows, but dim is " +
            std::to_string(e.rows) + " (" + (dim ? dim_from : "the first " + pre + "p-f.weight") + ")");
    in.insert(divide(s, w[1], p * p * f, "tensor '" + n + "' columns (patch " + key + ")"));
    e.patch.push_back(p);
    e.f_patch.push_back(f);
  }
  if (in.size() > 1) s.bad("the " + pre.substr(0, pre.size() - 1) + " tensors imply different " + in_what);
  if (!in.empty()) e.in = *in.begin();
  return e;
}

// Whether every value of tensor `name` is zero (+0 or -0).
bool all_zero(const WeightStore& ws, const std::string& name) {
  if (ws.is_quantized(name) && !ws.is_fp8(name)) {
    const QuantizedTensor q = ws.quantized(name, ws.info(name).shape);
    const int64_t rows = q.shape.empty() ? 1 : q.shape[0], cols = rows ? shape_numel(q.shape) / rows : 0;
    std::vector<float> row(size_t(std::max<int64_t>(cols, 1)));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(q, r, row.data());
      for (int64_t i = 0; i < cols; ++i)
        if (row[size_t(i)] != 0.0f) return false;
    }
    return true;
  }
  const Tensor t = ws.get(name).to(DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i)
    if (t.f32()[i] != 0.0f) return false;
  return true;
}
}  // namespace

void check_single_file_options(const PretrainedOptions& o) {
  std::string missing;
  using File = std::pair<const std::string*, const char*>;
  for (const File& e :
       {File{&o.transformer_file, "transformer_file (--transformer)"},
        File{&o.text_encoder_file, "text_encoder_file (--text-encoder)"}, File{&o.vae_file, "vae_file (--vae)"}})
    if (e.first->empty()) {
      if (!missing.empty()) missing += ", ";
      missing += e.second;
    }
  if (!missing.empty())
    fail("[from_pretrained] no model folder or hub id: give one, or every component as a single file (missing: ",
         missing, ")");
  if (o.tokenizer.empty() && !is_gguf_file(o.text_encoder_file))
    fail("[from_pretrained] no tokenizer: the text encoder '", o.text_encoder_file,
         "' is not a GGUF file (only a GGUF carries its tokenizer); give a tokenizer/ folder (tokenizer.json + "
         "tokenizer_config.json): --tokenizer DIR (PretrainedOptions::tokenizer), or -m MODEL");
}

bool is_gguf_file(const std::string& file) {
  std::ifstream f(file, std::ios::binary);
  char magic[4] = {};
  return f.read(magic, 4) && std::equal(magic, magic + 4, "GGUF");
}

ZImageTransformerConfig infer_transformer_config(const std::string& file) {
  WeightStore ws = with_component("transformer", [&] { return WeightStore::open_file(file); });
  ZImageTransformer2DModel::convert_original_layout(ws);
  const Shapes s{ws, "transformer", file};
  ZImageTransformerConfig c;  // Z-Image-Turbo's values for what the tensors do not tell
  c.dim = s.get("x_pad_token", 2)[1];
  c.cap_feat_dim = s.get("cap_embedder.0.weight", 1)[0];
  // all_x_embedder.{p}-{f}: patch sizes and in_channels
  const PatchEmbedders e = patch_embedders(s, "all_x_embedder.", c.dim, "x_pad_token", "in_channels");
  if (e.patch.empty()) s.bad("missing tensor 'all_x_embedder.2-1.weight' (or x_embedder.weight)");
  c.all_patch_size = e.patch;
  c.all_f_patch_size = e.f_patch;
  c.in_channels = e.in;
  c.n_layers = s.count("layers.", ".attention.to_q.weight");
  c.n_refiner_layers = s.count("noise_refiner.", ".attention.to_q.weight");
  const int64_t ctx = s.count("context_refiner.", ".attention.to_q.weight");
  if (ctx != c.n_refiner_layers)
    s.bad(std::string("it has ") + std::to_string(c.n_refiner_layers) + " noise_refiner and " + std::to_string(ctx) +
          " context_refiner layers (missing tensor '" + (ctx < c.n_refiner_layers ? "context" : "noise") + "_refiner." +
          std::to_string(std::min(ctx, c.n_refiner_layers)) + ".attention.to_q.weight')");
  const std::string block = c.n_layers > 0 ? "layers.0." : c.n_refiner_layers > 0 ? "noise_refiner.0." : "";
  if (block.empty()) s.bad("missing tensor 'layers.0.attention.to_q.weight'");
  const int64_t head_dim = s.get(block + "attention.norm_q.weight", 1)[0];
  c.n_heads = divide(s, c.dim, head_dim, "dim (x_pad_token) over head_dim (" + block + "attention.norm_q.weight)");
  c.n_kv_heads = c.n_heads;
  if (head_dim != 128)
    s.bad(std::string("head_dim is ") + std::to_string(head_dim) + " (the length of '" + block +
          "attention.norm_q.weight'), not Z-Image-Turbo's 128: its RoPE axes_dims cannot be inferred (give -m MODEL "
          "for the config)");
  c.axes_dims = {32, 48, 48};
  c.validate(file);
  ZImageTransformer2DModel::open_weights("", c, file);  // every tensor's name and shape
  return c;
}

namespace {
// An integer metadata value of a GGUF file, or -1 when absent.
int64_t meta_int(const gguf::File& g, const std::string& key) {
  auto it = g.metadata().find(key);
  if (it == g.metadata().end()) return -1;
  const gguf::Value& v = it->second;
  switch (v.type) {
    case gguf::ValueType::U8:
    case gguf::ValueType::U16:
    case gguf::ValueType::U32:
    case gguf::ValueType::U64:
      if (v.u > uint64_t(1) << 40)
        fail("[text_encoder] ", g.path(), ": metadata ", key, " = ", v.u, " is out of range");
      return int64_t(v.u);
    case gguf::ValueType::I8:
    case gguf::ValueType::I16:
    case gguf::ValueType::I32:
    case gguf::ValueType::I64:
      if (v.i < 0 || v.i > int64_t(1) << 40)
        fail("[text_encoder] ", g.path(), ": metadata ", key, " = ", v.i, " is out of range");
      return v.i;
    default:
      fail("[text_encoder] ", g.path(), ": metadata ", key, " is not an integer");
  }
}
std::optional<double> meta_float(const gguf::File& g, const std::string& key) {
  auto it = g.metadata().find(key);
  if (it == g.metadata().end()) return std::nullopt;
  const gguf::Value& v = it->second;
  if (v.type == gguf::ValueType::F32 || v.type == gguf::ValueType::F64) return v.f;
  if (v.type == gguf::ValueType::U32 || v.type == gguf::ValueType::U64) return double(v.u);
  if (v.type == gguf::ValueType::I32 || v.type == gguf::ValueType::I64) return double(v.i);
  fail("[text_encoder] ", g.path(), ": metadata ", key, " is not a number");
}
}  // namespace

Qwen3Config infer_text_encoder_config(const std::string& file) {
  WeightStore ws = with_component("text_encoder", [&] { return WeightStore::open_file(file); });
  Qwen3TextEncoder::convert_llama_cpp_names(ws);
  const Shapes s{ws, "text_encoder", file};
  const std::string pre = ws.has("model.embed_tokens.weight") ? "model." : "";
  const Shape emb = s.get(pre + "embed_tokens.weight", 2);
  const int64_t vocab = emb[0], hidden = emb[1];
  const std::string l0 = pre + "layers.0.";
  const int64_t layers = s.count(pre + "layers.", ".self_attn.q_proj.weight");
  if (layers == 0) s.bad("missing tensor '" + l0 + "self_attn.q_proj.weight'");
  const int64_t head_dim = s.get(l0 + "self_attn.q_norm.weight", 1)[0];
  const int64_t heads = divide(s, s.get(l0 + "self_attn.q_proj.weight", 2)[0], head_dim,
                               "'" + l0 + "self_attn.q_proj.weight' rows over head_dim (q_norm length)");
  const int64_t kv_heads = divide(s, s.get(l0 + "self_attn.k_proj.weight", 2)[0], head_dim,
                                  "'" + l0 + "self_attn.k_proj.weight' rows over head_dim (q_norm length)");
  const int64_t inter = s.get(l0 + "mlp.gate_proj.weight", 2)[0];
  nlohmann::json j = {{"model_type", "qwen3"},
                      {"vocab_size", vocab},
                      {"hidden_size", hidden},
                      {"intermediate_size", inter},
                      {"num_hidden_layers", layers},
                      {"num_attention_heads", heads},
                      {"num_key_value_heads", kv_heads},
                      {"head_dim", head_dim},
                      {"attention_bias", ws.has(l0 + "self_attn.q_proj.bias")},
                      {"rms_norm_eps", 1e-6},     // Qwen3-4B's
                      {"rope_theta", 1000000.0},  // Qwen3-4B's
                      {"max_position_embeddings", 40960},
                      {"hidden_act", "silu"}};
  if (is_gguf_file(file)) {  // llama.cpp's metadata, checked against the tensors
    const gguf::File g = with_component("text_encoder", [&] { return gguf::File(file); });
    std::string arch = "qwen3";
    if (auto it = g.metadata().find("general.architecture"); it != g.metadata().end()) {
      if (it->second.type != gguf::ValueType::STRING || it->second.s != "qwen3")
        fail("[text_encoder] ", file, ": general.architecture is '", it->second.s,
             "', expected 'qwen3' (a Qwen3 text encoder)");
      arch = it->second.s;
    }
    auto check = [&](const std::string& key, int64_t from_shapes, const std::string& tensor) {
      const int64_t v = meta_int(g, arch + "." + key);
      if (v >= 0 && v != from_shapes)
        fail("[text_encoder] ", file, ": metadata ", arch, ".", key, " = ", v, " disagrees with the tensors (", tensor,
             ": ", from_shapes, ")");
    };
    check("block_count", layers, "blk.N layers");
    check("embedding_length", hidden, "token_embd.weight columns");
    check("feed_forward_length", inter, "blk.0.ffn_gate.weight rows");
    check("attention.key_length", head_dim, "blk.0.attn_q_norm.weight length");
    check("attention.head_count", heads, "blk.0.attn_q.weight rows / key_length");
    check("attention.head_count_kv", kv_heads, "blk.0.attn_k.weight rows / key_length");
    if (auto v = meta_float(g, arch + ".rope.freq_base")) j["rope_theta"] = *v;
    if (auto v = meta_float(g, arch + ".attention.layer_norm_rms_epsilon")) j["rms_norm_eps"] = *v;
    if (const int64_t v = meta_int(g, arch + ".context_length"); v >= 0) j["max_position_embeddings"] = v;
  }
  const Qwen3Config c = Qwen3Config::parse(JsonConfig::from_json(j, file));
  Qwen3TextEncoder::open_weights("", c, nullptr, file);  // every tensor's name and shape
  return c;
}

nlohmann::json infer_vae_config_json(const std::string& file) {
  WeightStore ws = with_component("vae", [&] { return WeightStore::open_file(file); });
  const Shapes s{ws, "vae", file};
  // The number of blocks, in the LDM (encoder.down.N) or diffusers (encoder.down_blocks.N) layout,
  // then the LDM names under diffusers' (AutoencoderKL::convert_ldm_layout).
  std::string prefix;
  for (const char* p : {"first_stage_model.", "vae."})
    for (const std::string& n : ws.names())
      if (starts_with(n, p)) prefix = p;
  int64_t n_blocks = 0;
  for (const std::string& n : ws.names()) {
    for (const std::string& mark : {prefix + "encoder.down.", std::string("encoder.down_blocks.")}) {
      if (!starts_with(n, mark)) continue;
      const std::string rest = n.substr(mark.size());
      const size_t dot = rest.find('.');
      if (dot == 0 || dot == std::string::npos || dot > 2 || rest.find_first_not_of("0123456789") != dot) continue;
      n_blocks = std::max<int64_t>(n_blocks, std::stoll(rest.substr(0, dot)) + 1);
    }
  }
  if (n_blocks == 0)
    s.bad("missing tensor 'encoder.down_blocks.0.resnets.0.conv1.weight' (or encoder.down.0.block.0.conv1.weight)");
  if (n_blocks > AutoencoderKLConfig::kMaxBlocks)
    s.bad(std::string("it has ") + std::to_string(n_blocks) + " encoder down blocks (at most " +
          std::to_string(AutoencoderKLConfig::kMaxBlocks) + ")");
  AutoencoderKLConfig layout;
  layout.block_out_channels.assign(size_t(n_blocks), 0);
  AutoencoderKL::convert_ldm_layout(ws, layout);
  nlohmann::json blocks = nlohmann::json::array();
  for (int64_t i = 0; i < n_blocks; ++i)
    blocks.push_back(s.get(std::string("encoder.down_blocks.") + std::to_string(i) + ".resnets.0.conv1.weight", 4)[0]);
  const int64_t lpb = s.count("encoder.down_blocks.0.resnets.", ".conv1.weight");
  const int64_t latent = s.get("decoder.conv_in.weight", 4)[1];
  const Shape enc_out = s.get("encoder.conv_out.weight", 4);
  if (enc_out[0] != 2 * latent)
    s.bad(std::string("tensor 'encoder.conv_out.weight' has shape ") + shape_str(enc_out) + ", expected " +
          std::to_string(2 * latent) + " rows (2 x the latent channels of decoder.conv_in.weight)");
  if (latent != 16)
    s.bad(std::string("the latent has ") + std::to_string(latent) +
          " channels (decoder.conv_in.weight); without -m only the Flux VAE's 16 "
          "are known (scaling_factor 0.3611, shift_factor 0.1159): give -m MODEL for another VAE's config");
  const std::vector<std::string> down(size_t(n_blocks), "DownEncoderBlock2D"), up(size_t(n_blocks), "UpDecoderBlock2D");
  return {{"_class_name", "AutoencoderKL"},
          {"in_channels", s.get("encoder.conv_in.weight", 4)[1]},
          {"out_channels", s.get("decoder.conv_out.weight", 4)[0]},
          {"down_block_types", down},
          {"up_block_types", up},
          {"block_out_channels", blocks},
          {"layers_per_block", lpb},
          {"act_fn", "silu"},
          {"latent_channels", latent},
          {"norm_num_groups", 32},
          {"sample_size", 1024},
          {"scaling_factor", 0.3611},
          {"shift_factor", 0.1159},
          {"force_upcast", true},
          {"use_quant_conv", ws.has("quant_conv.weight")},
          {"use_post_quant_conv", ws.has("post_quant_conv.weight")},
          {"mid_block_add_attention", ws.has("encoder.mid_block.attentions.0.to_q.weight")}};
}

AutoencoderKLConfig infer_vae_config(const std::string& file) {
  const AutoencoderKLConfig c = AutoencoderKLConfig::parse(JsonConfig::from_json(infer_vae_config_json(file), file));
  AutoencoderKL::open_weights("", c, file);  // every tensor's name and shape
  return c;
}

nlohmann::json infer_controlnet_config_json(const std::string& file, const ZImageTransformerConfig& t) {
  WeightStore ws = with_component("controlnet", [&] { return WeightStore::open_file(file); });
  const Shapes s{ws, "controlnet", file, "inferring the ControlNet's config from the file"};
  const std::string pre = "control_all_x_embedder.";
  const PatchEmbedders e = patch_embedders(s, pre, 0, "", "control_in_dim");
  if (e.patch.empty()) {
    std::string what = "not a Z-Image ControlNet: missing tensor 'control_all_x_embedder.2-1.weight'";
    for (const char* n : {"x_pad_token", "model.diffusion_model.x_pad_token"})
      if (ws.has(n)) what += std::string(": it has '") + n + "', a Z-Image transformer's (give it as --transformer)";
    s.bad(what);
  }
  // Control layers: their number from the file; their places (the main layers their hints go
  // into) are not in it: spread evenly over the transformer's layers, one every round(L / N)
  // (half to even), which gives the places of the hub configs diffusers uses (hlky/Z-Image-Turbo-
  // Fun-Controlnet-Union*): Union 1.0's 6 of 30 -> [0, 5, ..., 25], 2.x's 15 -> [0, 2, ..., 28].
  const int64_t n = s.count("control_layers.", ".attention.to_q.weight");
  if (n == 0) s.bad("missing tensor 'control_layers.0.attention.to_q.weight'");
  const int64_t head_dim = s.get("control_layers.0.attention.norm_q.weight", 1)[0];
  const int64_t heads = divide(
      s, e.rows, head_dim, "dim (" + pre + "p-f.weight rows) over head_dim (control_layers.0.attention.norm_q.weight)");
  const int64_t L = t.n_layers;
  if (n > L)
    s.bad("it has " + std::to_string(n) + " control layers (control_layers.0 to ." + std::to_string(n - 1) +
          ") but the transformer has " + std::to_string(L) + " layers: their places cannot be inferred");
  int64_t stride = L / n;
  if (const int64_t r = L % n; 2 * r > n || (2 * r == n && stride % 2 == 1)) ++stride;
  if ((n - 1) * stride >= L)
    s.bad("its " + std::to_string(n) + " control layers, one every " + std::to_string(stride) +
          " (round(layers / control layers)), do not fit the transformer's " + std::to_string(L) +
          " layers: their places cannot be inferred");
  std::vector<int64_t> places;
  for (int64_t i = 0; i < n; ++i) places.push_back(i * stride);
  // control_noise_refiner: its blocks tell the variant (diffusers' Union 1.0 / 2.0 / 2.1 rule).
  const std::string r0 = "control_noise_refiner.0.";
  const int64_t nr = s.count("control_noise_refiner.", ".attention.to_q.weight");
  nlohmann::json refiner_places = nullptr, mode = nullptr;
  int64_t n_refiner = 0;
  auto first_refiner_places = [&](int64_t hints) {
    refiner_places = nlohmann::json::array();
    for (int64_t i = 0; i < std::min(hints, t.n_refiner_layers); ++i) refiner_places.push_back(i);
  };
  if (nr > 0 && ws.has(r0 + "before_proj.weight") && !all_zero(ws, r0 + "before_proj.weight")) {
    mode = "control_noise_refiner";  // Union 2.1: control blocks over the image tokens, hints into noise_refiner
    n_refiner = nr;
    first_refiner_places(nr);
  } else if (nr == 0 || ws.has(r0 + "before_proj.weight") || ws.has(r0 + "after_proj.weight")) {
    mode = "control_layers";  // Union 2.0 (zeroed control_noise_refiner, dropped) or none at all
    n_refiner = t.n_refiner_layers;
    first_refiner_places(n);
  } else {
    n_refiner = nr;  // Union 1.0: plain refiner blocks on the control context
  }
  return {{"_class_name", "ZImageControlNetModel"},
          {"add_control_noise_refiner", mode},
          {"all_f_patch_size", e.f_patch},
          {"all_patch_size", e.patch},
          {"control_in_dim", e.in},
          {"control_layers_places", places},
          {"control_refiner_layers_places", refiner_places},
          {"dim", e.rows},
          {"n_heads", heads},
          {"n_kv_heads", heads},
          {"n_refiner_layers", n_refiner},
          {"norm_eps", 1e-5},
          {"qk_norm", true}};
}

ZImageControlNetConfig infer_controlnet_config(const std::string& file, const ZImageTransformerConfig& t) {
  const ZImageControlNetConfig c = ZImageControlNetConfig::parse(infer_controlnet_config_json(file, t), file);
  c.check_compatible(t, file);
  ZImageControlNetModel::open_weights(file, c, t);  // every tensor's name and shape
  return c;
}

scheduler::FlowMatchEulerConfig zimage_turbo_scheduler_config() {
  scheduler::FlowMatchEulerConfig c;  // diffusers' defaults, with Z-Image-Turbo's shift
  c.shift = 3.0;
  c.validate();
  return c;
}

}  // namespace zimage
