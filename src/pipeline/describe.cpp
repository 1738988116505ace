// `zimage info`: what a model holds, without loading any weights into memory. It reads the
// model as from_pretrained does (model_index.json, every config through the components' parsers,
// the tokenizer, every expected tensor's name, shape and dtype from the safetensors headers), so a
// folder `generate` refuses is refused here with the same error. Components given as single files
// (PretrainedOptions::transformer_file, ...) are read from those files; without a folder their
// configs are inferred from the files (pipeline/single_file.h) and shown as inferred.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/safetensors.h"
#include "pipeline/model_configs.h"
#include "pipeline/model_folder.h"
#include "pipeline/single_file.h"
#include "text_encoder/qwen3_text_encoder.h"
#include "tokenizer/tokenizer.h"
#include "transformer/controlnet_z_image.h"
#include "transformer/transformer_z_image.h"
#include "vae/autoencoder_kl.h"
#include "zimage/pipeline.h"

namespace zimage {

namespace {
using ojson = nlohmann::ordered_json;

// The configs as JSON, by the keys of their config.json (what the engine uses).
ojson to_json(const ZImageTransformerConfig& c) {
  ojson j = {{"all_patch_size", c.all_patch_size},
             {"all_f_patch_size", c.all_f_patch_size},
             {"in_channels", c.in_channels},
             {"dim", c.dim},
             {"n_layers", c.n_layers},
             {"n_refiner_layers", c.n_refiner_layers},
             {"n_heads", c.n_heads},
             {"n_kv_heads", c.n_kv_heads},
             {"norm_eps", c.norm_eps},
             {"qk_norm", c.qk_norm},
             {"cap_feat_dim", c.cap_feat_dim},
             {"rope_theta", c.rope_theta},
             {"t_scale", c.t_scale},
             {"axes_dims", c.axes_dims},
             {"axes_lens", c.axes_lens}};
  return j;
}
ojson to_json(const Qwen3Config& c) {
  return {{"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size},
          {"num_hidden_layers", c.num_hidden_layers},
          {"num_attention_heads", c.num_attention_heads},
          {"num_key_value_heads", c.num_key_value_heads},
          {"head_dim", c.head_dim},
          {"max_position_embeddings", c.max_position_embeddings},
          {"rms_norm_eps", c.rms_norm_eps},
          {"rope_theta", c.rope_theta},
          {"attention_bias", c.attention_bias},
          {"hidden_act", c.hidden_act}};
}
ojson to_json(const scheduler::FlowMatchEulerConfig& c) {
  ojson j = {{"num_train_timesteps", c.num_train_timesteps},
             {"shift", c.shift},
             {"use_dynamic_shifting", c.use_dynamic_shifting}};
  return j;
}
// A config file's plain values (validated before; JSON nesting is bounded by the reader, so
// copying them cannot recurse deeply).
nlohmann::json plain_values(const std::string& path) {
  auto jc = JsonConfig::load(path);
  nlohmann::json filtered = nlohmann::json::object();
  for (auto& [k, v] : jc.json().items())
    if (!v.is_object() && !(v.is_string() && v.get<std::string>().size() > 200)) filtered[k] = v;
  return filtered;
}
void add_weights(ojson& c, const WeightStore& ws, int64_t& total_params, uint64_t& total_bytes) {
  c["dtype"] = dtype_name(ws.stored_dtype());
  c["parameters"] = ws.num_params();
  c["bytes_on_disk"] = ws.bytes_on_disk();
  c["tensors"] = ws.names().size();
  total_params += ws.num_params();
  total_bytes += ws.bytes_on_disk();
}
}  // namespace

std::string describe_model(const std::string& path_or_id, const PretrainedOptions& o) {
  std::string folder;
  ModelIndex mi;
  ModelConfigs cfgs;
  if (!path_or_id.empty()) {
    ResolveOptions ro;
    ro.revision = o.revision;
    ro.subfolder = o.subfolder;
    ro.cache_dir = o.cache_dir;
    ro.local_files_only = o.local_files_only;
    ro.token = o.token;
    folder = resolve_model_folder(path_or_id, ro);
    mi = read_model_index(folder);
    cfgs = read_model_configs(mi);
  } else {  // single files, as from_pretrained("", o)
    check_single_file_options(o);
    cfgs.transformer = infer_transformer_config(o.transformer_file);
    cfgs.text_encoder = infer_text_encoder_config(o.text_encoder_file);
    cfgs.vae = infer_vae_config(o.vae_file);
    cfgs.scheduler = zimage_turbo_scheduler_config();
    check_model_configs(cfgs, "[from_pretrained] ");
  }
  auto dir = [&](const char* component) { return folder.empty() ? std::string() : mi.component_dir(component); };
  if (!o.tokenizer.empty())
    Qwen2Tokenizer::from_folder(o.tokenizer);
  else if (folder.empty())
    Qwen2Tokenizer::from_gguf(o.text_encoder_file);
  else
    Qwen2Tokenizer::from_folder(mi.component_dir("tokenizer"));
  std::map<std::string, WeightStore> weights;
  weights.emplace("text_encoder",
                  Qwen3TextEncoder::open_weights(dir("text_encoder"), cfgs.text_encoder, nullptr, o.text_encoder_file));
  weights.emplace("transformer",
                  ZImageTransformer2DModel::open_weights(dir("transformer"), cfgs.transformer, o.transformer_file));
  weights.emplace("vae", AutoencoderKL::open_weights(dir("vae"), cfgs.vae, o.vae_file));

  ojson j;
  j["folder"] = folder.empty() ? ojson(nullptr) : ojson(folder);
  j["pipeline"] = folder.empty() ? std::string("ZImagePipeline") : mi.class_name;
  int64_t total_params = 0;
  uint64_t total_bytes = 0;
  if (folder.empty()) {  // the components from_pretrained("", o) builds, their configs as inferred
    const std::map<std::string, std::pair<std::string, std::string>> classes = {
        {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}},
        {"text_encoder", {"transformers", "Qwen3Model"}},
        {"tokenizer", {"transformers", "Qwen2Tokenizer"}},
        {"transformer", {"diffusers", "ZImageTransformer2DModel"}},
        {"vae", {"diffusers", "AutoencoderKL"}}};
    const std::map<std::string, std::string> files = {
        {"text_encoder", o.text_encoder_file},
        {"tokenizer", o.tokenizer.empty() ? o.text_encoder_file : o.tokenizer},
        {"transformer", o.transformer_file},
        {"vae", o.vae_file}};
    for (auto& [name, lib_cls] : classes) {
      ojson c;
      c["library"] = lib_cls.first;
      c["class"] = lib_cls.second;
      if (auto f = files.find(name); f != files.end()) c["file"] = f->second;
      if (name == "scheduler") c["config"] = to_json(cfgs.scheduler);
      if (name == "text_encoder") c["config"] = to_json(cfgs.text_encoder);
      if (name == "transformer") c["config"] = to_json(cfgs.transformer);
      if (name == "vae") c["config"] = infer_vae_config_json(o.vae_file);
      if (name != "scheduler" && name != "tokenizer") c["config_inferred"] = true;
      if (auto w = weights.find(name); w != weights.end()) add_weights(c, w->second, total_params, total_bytes);
      j["components"][name] = c;
    }
  } else {
    const std::map<std::string, const char*> config_file = {{"scheduler", "scheduler_config.json"},
                                                            {"tokenizer", "tokenizer_config.json"},
                                                            {"text_encoder", "config.json"},
                                                            {"transformer", "config.json"},
                                                            {"vae", "config.json"}};
    const std::map<std::string, std::string> files = {{"text_encoder", o.text_encoder_file},
                                                      {"tokenizer", o.tokenizer},
                                                      {"transformer", o.transformer_file},
                                                      {"vae", o.vae_file}};
    for (auto& [name, lib_cls] : mi.components) {
      ojson c;
      c["library"] = lib_cls.first;
      c["class"] = lib_cls.second;
      if (auto f = files.find(name); f != files.end() && !f->second.empty()) c["file"] = f->second;
      auto cf = config_file.find(name);
      if (cf != config_file.end()) {
        if (name == "tokenizer")
          c["config_file"] = cf->second;
        else
          c["config"] = plain_values(mi.component_dir(name) + "/" + cf->second);
      }
      if (auto w = weights.find(name); w != weights.end()) add_weights(c, w->second, total_params, total_bytes);
      j["components"][name] = c;
    }
  }
  if (!o.controlnet.empty()) {  // as from_pretrained attaches it: a folder, or a file (config inferred)
    ojson c;
    c["library"] = "diffusers";
    c["class"] = "ZImageControlNetModel";
    std::error_code ec;
    ZImageControlNetConfig cc;
    if (std::filesystem::is_regular_file(o.controlnet, ec)) {
      c["file"] = o.controlnet;
      cc = infer_controlnet_config(o.controlnet, cfgs.transformer);
      c["config"] = infer_controlnet_config_json(o.controlnet, cfgs.transformer);
      c["config_inferred"] = true;
    } else {
      if (!std::filesystem::is_directory(o.controlnet, ec))
        fail("[controlnet] '", o.controlnet,
             "' does not exist (a ZImageControlNetModel folder or a .safetensors file)");
      cc = ZImageControlNetConfig::load(o.controlnet + "/config.json");
      cc.check_compatible(cfgs.transformer, o.controlnet + "/config.json");
      c["folder"] = o.controlnet;
      c["config"] = plain_values(o.controlnet + "/config.json");
    }
    add_weights(c, ZImageControlNetModel::open_weights(o.controlnet, cc, cfgs.transformer), total_params, total_bytes);
    j["components"]["controlnet"] = c;
  }
  j["total_parameters"] = total_params;
  j["total_weight_bytes"] = total_bytes;
  return j.dump(2);
}

}  // namespace zimage
