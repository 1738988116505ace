// `zimage info`: what a model folder holds, without loading any weights into memory.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/safetensors.h"
#include "pipeline/model_folder.h"
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
  nlohmann::ordered_json j;
  j["folder"] = folder;
  j["pipeline"] = mi.class_name;
  int64_t total_params = 0;
  uint64_t total_bytes = 0;
  for (auto& [name, lib_cls] : mi.components) {
    nlohmann::ordered_json c;
    c["library"] = lib_cls.first;
    c["class"] = lib_cls.second;
    std::string dir = mi.component_dir(name);
    for (const char* cfg : {"config.json", "scheduler_config.json", "tokenizer_config.json"}) {
      std::string p = dir + "/" + cfg;
      if (!std::filesystem::exists(p)) continue;
      if (std::string(cfg) == "tokenizer_config.json") {
        c["config_file"] = cfg;
        continue;
      }
      auto jc = JsonConfig::load(p);
      nlohmann::json filtered = nlohmann::json::object();
      for (auto& [k, v] : jc.json().items())
        if (!v.is_object() && !(v.is_string() && v.get<std::string>().size() > 200)) filtered[k] = v;
      c["config"] = filtered;
    }
    if (name == "text_encoder" || name == "transformer" || name == "vae") {
      WeightStore w = WeightStore::open_dir(dir);
      c["dtype"] = dtype_name(w.stored_dtype());
      c["parameters"] = w.num_params();
      c["bytes_on_disk"] = w.bytes_on_disk();
      c["tensors"] = w.names().size();
      total_params += w.num_params();
      total_bytes += w.bytes_on_disk();
    }
    j["components"][name] = c;
  }
  j["total_parameters"] = total_params;
  j["total_weight_bytes"] = total_bytes;
  return j.dump(2);
}

}  // namespace zimage
