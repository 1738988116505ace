// Test-side single files (no model folder), written at test time: a Z-Image transformer GGUF in
// the original / ComfyUI key layout (fused attention.qkv, x_embedder, final_layer) with Q8_0
// linear weights, a llama.cpp-named Qwen3 GGUF (the tiny fixture text encoder's layout, Q8_0) with
// qwen3.* and tokenizer metadata as convert_hf_to_gguf.py writes them, a diffusers-named VAE, a
// PEFT LoRA, and the model folder whose configs describe those files (for the -m comparison).
// The transformer has head_dim 128 and the VAE 32-channel blocks, the values config inference
// assumes (Z-Image-Turbo's RoPE axes, the Flux VAE's 32 norm groups).
#pragma once
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "transformer/transformer_block.h"
#include "transformer/transformer_z_image.h"
#include "util/gguf_tokenizer.h"
#include "util/gguf_writer.h"
#include "util/test_util.h"
#include "vae/autoencoder_kl.h"

namespace zimage::test {

// transformers' Qwen3 name -> llama.cpp's
inline std::string llama_name(const std::string& n) {
  static const std::pair<const char*, const char*> kBlk[] = {
      {"input_layernorm.weight", "attn_norm.weight"},    {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"}, {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},       {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"}};
  if (n == "embed_tokens.weight") return "token_embd.weight";
  if (n == "norm.weight") return "output_norm.weight";
  if (n.rfind("layers.", 0) == 0) {
    const size_t dot = n.find('.', 7);
    const std::string idx = n.substr(7, dot - 7), rest = n.substr(dot + 1);
    for (auto& [a, b] : kBlk)
      if (rest == a) return "blk." + idx + "." + b;
  }
  return n;
}

// The qwen3.* metadata of the tiny fixture text encoder.
inline std::vector<GgufKv> tiny_qwen3_kvs() {
  namespace kv = gguf_kv;
  return {kv::str("general.architecture", "qwen3"),    kv::u32("qwen3.block_count", 3),
          kv::u32("qwen3.context_length", 40960),      kv::u32("qwen3.embedding_length", 32),
          kv::u32("qwen3.feed_forward_length", 48),    kv::u32("qwen3.attention.head_count", 4),
          kv::u32("qwen3.attention.head_count_kv", 1), kv::u32("qwen3.attention.key_length", 8),
          kv::f32("qwen3.rope.freq_base", 10000.0f),   kv::f32("qwen3.attention.layer_norm_rms_epsilon", 1e-6f)};
}

// The tiny fixture text encoder under llama.cpp's names with 2-D weights as random Q8_0 blocks.
inline std::vector<GgufEntry> tiny_text_encoder_entries() {
  WeightStore store = WeightStore::open_dir(fixture("models/tiny-fp32/text_encoder"));
  std::vector<GgufEntry> es;
  uint32_t seed = 300;
  for (const std::string& name : store.names()) {
    const Tensor t = store.get(name).to(DType::F32);
    GgufEntry e{llama_name(name), t.shape(), 0, {}};
    if (t.ndim() == 2 && t.dim(1) % 32 == 0) {
      e.type = uint32_t(gguf::GgmlType::Q8_0);
      e.bytes = random_blocks(e.type, t.numel(), seed++, 2e-3f);
    } else {
      e.bytes.assign(static_cast<const char*>(t.raw()), size_t(t.nbytes()));
    }
    es.push_back(std::move(e));
  }
  return es;
}

inline ZImageTransformerConfig single_file_transformer_config() {
  ZImageTransformerConfig c;
  c.dim = 128;
  c.n_heads = c.n_kv_heads = 1;
  c.n_layers = 1;
  c.n_refiner_layers = 1;
  c.cap_feat_dim = 32;
  return c;  // in_channels 16, patch 2-1, axes_dims [32, 48, 48], the rest Z-Image-Turbo's
}

inline AutoencoderKLConfig single_file_vae_config() {
  AutoencoderKLConfig v;
  v.block_out_channels = {32, 32};
  v.down_block_types = {"DownEncoderBlock2D", "DownEncoderBlock2D"};
  v.up_block_types = {"UpDecoderBlock2D", "UpDecoderBlock2D"};
  v.layers_per_block = 1;
  v.latent_channels = 16;
  v.use_quant_conv = v.use_post_quant_conv = false;
  return v;
}

struct SingleFiles {
  std::string dir, transformer, text_encoder, vae, lora, model;
};

// Random tensors of the given specs: norms near 1, others N(0, 1/fan_in).
inline std::map<std::string, Tensor> random_weights(const std::vector<TensorSpec>& specs, uint32_t seed) {
  std::map<std::string, Tensor> out;
  for (const TensorSpec& s : specs) {
    Tensor t = randn(s.shape, seed++);
    const bool norm = s.shape.size() == 1 && (s.name.find("norm") != std::string::npos);
    const double fan_in = s.shape.size() >= 2 ? double(shape_numel(s.shape) / s.shape[0]) : 50.0;
    for (int64_t i = 0; i < t.numel(); ++i)
      t.f32()[i] = norm ? 1.0f + 0.1f * t.f32()[i] : float(t.f32()[i] / std::sqrt(fan_in));
    out[s.name] = t;
  }
  return out;
}

inline SingleFiles write_single_files(const std::string& dir) {
  namespace fs = std::filesystem;
  SingleFiles f{dir,           dir + "/z.gguf", dir + "/qwen.gguf", dir + "/ae.safetensors", dir + "/a.safetensors",
                dir + "/model"};
  // Transformer: original layout, Q8_0 where the rows are whole blocks.
  const ZImageTransformerConfig tc = single_file_transformer_config();
  std::map<std::string, Tensor> w = random_weights(ZImageTransformer2DModel::expected_tensors(tc), 1000);
  std::vector<GgufEntry> es;
  uint32_t seed = 2000;
  auto add = [&](const std::string& name, const Shape& shape, const Tensor* t) {
    GgufEntry e{name, shape, 0, {}};
    if (shape.size() == 2 && shape[1] % 32 == 0 && name.find("pad_token") == std::string::npos) {
      e.type = uint32_t(gguf::GgmlType::Q8_0);
      e.bytes = random_blocks(e.type, shape_numel(shape), seed++, float(1.0 / (74.0 * std::sqrt(double(shape[1])))));
    } else {
      e.bytes.assign(static_cast<const char*>(t->raw()), size_t(t->nbytes()));
    }
    es.push_back(std::move(e));
  };
  static const std::pair<const char*, const char*> kOrig[] = {{"all_x_embedder.2-1.", "x_embedder."},
                                                              {"all_final_layer.2-1.", "final_layer."},
                                                              {".attention.to_out.0.", ".attention.out."},
                                                              {".attention.norm_q.", ".attention.q_norm."},
                                                              {".attention.norm_k.", ".attention.k_norm."}};
  for (auto& [name, t] : w) {
    if (name.find(".attention.to_k.") != std::string::npos || name.find(".attention.to_v.") != std::string::npos)
      continue;
    std::string n = name;
    if (const size_t q = n.find(".attention.to_q.weight"); q != std::string::npos) {  // fused qkv
      add(n.substr(0, q) + ".attention.qkv.weight", {3 * tc.dim, tc.dim}, nullptr);
      continue;
    }
    for (auto& [a, b] : kOrig)
      if (const size_t p = n.find(a); p != std::string::npos) n.replace(p, std::string(a).size(), b);
    add(n, t.shape(), &t);
  }
  write_file(f.transformer, gguf_bytes(es));
  // Text encoder: the tiny one, llama.cpp names, qwen3 and tokenizer metadata.
  std::vector<GgufKv> kvs = tiny_qwen3_kvs();
  for (GgufKv& kv : qwen3_tokenizer_kvs()) kvs.push_back(std::move(kv));
  write_file(f.text_encoder, gguf_bytes(tiny_text_encoder_entries(), kvs));
  // VAE (diffusers names) and a PEFT LoRA (two quantized targets: run-time branches; one dense: merged).
  const AutoencoderKLConfig vc = single_file_vae_config();
  save_safetensors(f.vae, random_weights(AutoencoderKL::expected_tensors(vc), 3000));
  std::map<std::string, Tensor> lora;
  auto pair = [&](const std::string& m, int64_t out, int64_t in, uint32_t s) {
    lora["transformer." + m + ".lora_A.weight"] = randn({4, in}, s);
    lora["transformer." + m + ".lora_B.weight"] = randn({out, 4}, s + 1);
    for (int64_t i = 0; i < 4 * out; ++i) lora["transformer." + m + ".lora_B.weight"].f32()[i] *= 0.05f;
  };
  pair("layers.0.attention.to_q", tc.dim, tc.dim, 4000);
  pair("layers.0.feed_forward.w1", tc.ffn_hidden_dim(), tc.dim, 4002);
  pair("layers.0.feed_forward.w2", tc.dim, tc.ffn_hidden_dim(), 4004);
  save_safetensors(f.lora, lora);
  // The model folder with these configs (weights come from the files).
  const std::string tiny = fixture("models/tiny-fp32");
  for (const char* d : {"scheduler", "text_encoder", "tokenizer", "transformer", "vae"})
    fs::create_directories(f.model + "/" + d);
  fs::copy_file(tiny + "/model_index.json", f.model + "/model_index.json");
  fs::copy_file(tiny + "/scheduler/scheduler_config.json", f.model + "/scheduler/scheduler_config.json");
  fs::copy_file(tiny + "/text_encoder/config.json", f.model + "/text_encoder/config.json");
  for (const char* t : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(fixture(std::string("qwen3_tokenizer/") + t), f.model + "/tokenizer/" + t);
  const nlohmann::json tj = {{"_class_name", "ZImageTransformer2DModel"},
                             {"all_patch_size", {2}},
                             {"all_f_patch_size", {1}},
                             {"in_channels", 16},
                             {"dim", 128},
                             {"n_layers", 1},
                             {"n_refiner_layers", 1},
                             {"n_heads", 1},
                             {"n_kv_heads", 1},
                             {"norm_eps", 1e-5},
                             {"qk_norm", true},
                             {"cap_feat_dim", 32},
                             {"rope_theta", 256.0},
                             {"t_scale", 1000.0},
                             {"axes_dims", {32, 48, 48}},
                             {"axes_lens", {1024, 512, 512}}};
  write_file(f.model + "/transformer/config.json", tj.dump(2));
  const nlohmann::json vj = {{"_class_name", "AutoencoderKL"},
                             {"act_fn", "silu"},
                             {"block_out_channels", {32, 32}},
                             {"down_block_types", {"DownEncoderBlock2D", "DownEncoderBlock2D"}},
                             {"force_upcast", true},
                             {"in_channels", 3},
                             {"latent_channels", 16},
                             {"layers_per_block", 1},
                             {"mid_block_add_attention", true},
                             {"norm_num_groups", 32},
                             {"out_channels", 3},
                             {"sample_size", 1024},
                             {"scaling_factor", 0.3611},
                             {"shift_factor", 0.1159},
                             {"up_block_types", {"UpDecoderBlock2D", "UpDecoderBlock2D"}},
                             {"use_post_quant_conv", false},
                             {"use_quant_conv", false}};
  write_file(f.model + "/vae/config.json", vj.dump(2));
  return f;
}

// The files of write_single_files, written once per test binary (a function-local static of an
// inline function: one for every test file of the binary) and removed at its exit.
inline const SingleFiles& shared_single_files() {
  struct Files {
    SingleFiles f;
    ~Files() {
      std::error_code ec;
      std::filesystem::remove_all(f.dir, ec);
    }
  };
  static const Files h{write_single_files(temp_dir("singlefiles"))};
  return h.f;
}

// A tiny fixture ControlNet (tests/fixtures/controlnet/<model>/<net>, diffusers names) as the one
// .safetensors file alibaba-pai publishes, written to `path`: its tensors unchanged (dtype too),
// without those `drop` returns true for, plus `extra` ones.
inline std::string write_controlnet_file(const std::string& model, const std::string& net, const std::string& path,
                                         const std::map<std::string, Tensor>& extra = {},
                                         const std::function<bool(const std::string&)>& drop = nullptr) {
  WeightStore store = WeightStore::open_dir(fixture("controlnet/" + model + "/" + net));
  std::map<std::string, Tensor> ts;
  for (const std::string& name : store.names())
    if (!drop || !drop(name)) ts[name] = store.get(name);
  for (const auto& [name, t] : extra) ts[name] = t;
  save_safetensors(path, ts);
  return path;
}

// Union 2.x's control_noise_refiner: `n` control blocks (before_proj on the first) of width `dim`
// with random weights; `zero_before` zeroes the first one's before_proj (Union 2.0, whose refiner
// diffusers' conversion drops), `before` false leaves it out.
inline std::map<std::string, Tensor> control_refiner_tensors(const ZImageTransformerConfig& block, int64_t n,
                                                             bool before, bool zero_before, uint32_t seed) {
  std::vector<TensorSpec> specs;
  for (int64_t i = 0; i < n; ++i) {
    const std::string p = "control_noise_refiner." + std::to_string(i) + ".";
    transformer::block_tensor_specs(specs, p, block, true);
    if (i == 0 && before) {
      specs.push_back({p + "before_proj.weight", {block.dim, block.dim}});
      specs.push_back({p + "before_proj.bias", {block.dim}});
    }
    specs.push_back({p + "after_proj.weight", {block.dim, block.dim}});
    specs.push_back({p + "after_proj.bias", {block.dim}});
  }
  std::map<std::string, Tensor> w = random_weights(specs, seed);
  if (before && zero_before)
    for (const char* n : {"control_noise_refiner.0.before_proj.weight", "control_noise_refiner.0.before_proj.bias"})
      for (int64_t i = 0; i < w[n].numel(); ++i) w[n].f32()[i] = 0.0f;
  for (auto& [name, t] : w) t = t.to(DType::BF16);
  return w;
}

}  // namespace zimage::test
