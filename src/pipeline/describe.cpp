// `zimage info`: what a model folder holds, without loading any weights into memory. It reads the
// folder as from_pretrained does (model_index.json, every config through the components' parsers,
// the tokenizer, every expected tensor's name, shape and dtype from the safetensors headers), so a
// folder `generate` refuses is refused here with the same error.
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/safetensors.h"
#include "pipeline/model_configs.h"
#include "pipeline/model_folder.h"
#include "text_encoder/qwen3_text_encoder.h"
#include "tokenizer/tokenizer.h"
#include "transformer/transformer_z_image.h"
#include "vae/autoencoder_kl.h"
#include "zimage/pipeline.h"

namespace zimage {

std::string describe_model(const std::string& path_or_id, const PretrainedOptions& o) {
  ResolveOptions ro;
  ro.revision = o.revision;
  ro.subfolder = o.subfolder;
  ro.cache_dir = o.cache_dir;
  ro.local_files_only = o.local_files_only;
  ro.token = o.token;
  std::string folder = resolve_model_folder(path_or_id, ro);
  ModelIndex mi = read_model_index(folder);
  const ModelConfigs cfgs = read_model_configs(mi);
  Qwen2Tokenizer::from_folder(mi.component_dir("tokenizer"));
  std::map<std::string, WeightStore> weights;
  weights.emplace("text_encoder", Qwen3TextEncoder::open_weights(mi.component_dir("text_encoder"), cfgs.text_encoder));
  weights.emplace("transformer",
                  ZImageTransformer2DModel::open_weights(mi.component_dir("transformer"), cfgs.transformer));
  weights.emplace("vae", AutoencoderKL::open_weights(mi.component_dir("vae"), cfgs.vae));

  nlohmann::ordered_json j;
  j["folder"] = folder;
  j["pipeline"] = mi.class_name;
  int64_t total_params = 0;
  uint64_t total_bytes = 0;
  const std::map<std::string, const char*> config_file = {{"scheduler", "scheduler_config.json"},
                                                          {"tokenizer", "tokenizer_config.json"},
                                                          {"text_encoder", "config.json"},
                                                          {"transformer", "config.json"},
                                                          {"vae", "config.json"}};
  for (auto& [name, lib_cls] : mi.components) {
    nlohmann::ordered_json c;
    c["library"] = lib_cls.first;
    c["class"] = lib_cls.second;
    auto cf = config_file.find(name);
    if (cf != config_file.end()) {
      if (name == "tokenizer") {
        c["config_file"] = cf->second;
      } else {
        // The configs were validated above; this shows their plain values (JSON nesting is
        // bounded by the reader, so copying them cannot recurse deeply).
        auto jc = JsonConfig::load(mi.component_dir(name) + "/" + cf->second);
        nlohmann::json filtered = nlohmann::json::object();
        for (auto& [k, v] : jc.json().items())
          if (!v.is_object() && !(v.is_string() && v.get<std::string>().size() > 200)) filtered[k] = v;
        c["config"] = filtered;
      }
    }
    if (auto w = weights.find(name); w != weights.end()) {
      const WeightStore& ws = w->second;
      c["dtype"] = dtype_name(ws.stored_dtype());
      c["parameters"] = ws.num_params();
      c["bytes_on_disk"] = ws.bytes_on_disk();
      c["tensors"] = ws.names().size();
      total_params += ws.num_params();
      total_bytes += ws.bytes_on_disk();
    }
    j["components"][name] = c;
  }
  j["total_parameters"] = total_params;
  j["total_weight_bytes"] = total_bytes;
  return j.dump(2);
}

}  // namespace zimage
