// Finding a diffusers model folder: a local path, or a hub id resolved in the Hugging Face
// cache layout (HF_HUB_CACHE / HF_HOME / cache_dir, models--Org--Name/snapshots/<rev>/), which
// is downloaded there (hub::pull) when the cache lacks it and downloads are allowed.
#pragma once
#include <map>
#include <string>

namespace zimage {

struct ResolveOptions {
  std::string revision = "main";
  std::string subfolder;
  std::string cache_dir;
  bool local_files_only = false;
  bool force_download = false;
  std::string token;
};

// Returns the absolute folder that holds model_index.json.
std::string resolve_model_folder(const std::string& path_or_id, const ResolveOptions& opt);

// The hub cache root that huggingface_hub would use (cache_dir > HF_HUB_CACHE > HF_HOME/hub >
// XDG_CACHE_HOME/huggingface/hub > ~/.cache/huggingface/hub).
std::string hf_cache_root(const std::string& cache_dir);

// model_index.json: component name -> [library, class name]. Checks that every component the
// Z-Image pipeline needs is declared and present as a folder, naming what is missing.
struct ModelIndex {
  std::string folder;
  std::string class_name;  // "ZImagePipeline"
  std::map<std::string, std::pair<std::string, std::string>> components;
  std::string component_dir(const std::string& name) const { return folder + "/" + name; }
};
ModelIndex read_model_index(const std::string& folder);

}  // namespace zimage
