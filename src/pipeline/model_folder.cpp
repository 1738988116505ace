#include "pipeline/model_folder.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/error.h"

namespace zimage {
namespace fs = std::filesystem;

namespace {
std::string env(const char* k) {
  const char* v = std::getenv(k);
  return v ? std::string(v) : std::string();
}

bool looks_like_hub_id(const std::string& s) {
  static const std::regex re(R"(^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$)");
  return std::regex_match(s, re) && s.find("..") == std::string::npos;
}

bool is_commit_hash(const std::string& s) {
  static const std::regex re("^[0-9a-f]{40}$");
  return std::regex_match(s, re);
}
}  // namespace

std::string hf_cache_root(const std::string& cache_dir) {
  if (!cache_dir.empty()) return cache_dir;
  if (auto v = env("HF_HUB_CACHE"); !v.empty()) return v;
  if (auto v = env("HUGGINGFACE_HUB_CACHE"); !v.empty()) return v;
  if (auto v = env("HF_HOME"); !v.empty()) return v + "/hub";
  if (auto v = env("XDG_CACHE_HOME"); !v.empty()) return v + "/huggingface/hub";
  return env("HOME") + "/.cache/huggingface/hub";
}

std::string resolve_model_folder(const std::string& path_or_id, const ResolveOptions& opt) {
  if (path_or_id.empty()) fail("[from_pretrained] empty model path or id");
  if (opt.subfolder.find("..") != std::string::npos || fs::path(opt.subfolder).is_absolute())
    fail("[from_pretrained] subfolder '", opt.subfolder, "' must be a relative path inside the model");
  std::error_code ec;
  if (fs::is_directory(path_or_id, ec)) {
    fs::path p = opt.subfolder.empty() ? fs::absolute(path_or_id) : fs::absolute(path_or_id) / opt.subfolder;
    if (!fs::is_directory(p)) fail("[from_pretrained] subfolder '", opt.subfolder, "' not found in '", path_or_id, "'");
    return fs::weakly_canonical(p).string();
  }
  if (!looks_like_hub_id(path_or_id))
    fail("[from_pretrained] model folder '", path_or_id, "' does not exist (and is not a hub id like 'Tongyi-MAI/Z-Image-Turbo')");
  if (opt.force_download)
    fail("[from_pretrained] force_download: downloading is not supported yet; fetch the model with "
         "`huggingface-cli download ", path_or_id, "` and run again");
  const std::string root = hf_cache_root(opt.cache_dir);
  std::string repo_dir_name = "models--" + path_or_id;
  repo_dir_name.replace(repo_dir_name.find('/'), 1, "--");
  fs::path repo = fs::path(root) / repo_dir_name;
  const std::string how = " Download it first, e.g. `huggingface-cli download " + path_or_id +
                          "` (or pass a local diffusers folder); zimage does not download models yet.";
  if (!fs::is_directory(repo))
    fail("[from_pretrained] '", path_or_id, "' is not in the Hugging Face cache: ", repo.string(), " does not exist.", how);
  std::string rev = opt.revision.empty() ? "main" : opt.revision;
  if (rev.find('/') != std::string::npos && rev.find("..") != std::string::npos)
    fail("[from_pretrained] invalid revision '", rev, "'");
  std::string commit;
  fs::path ref = repo / "refs" / rev;
  if (fs::is_regular_file(ref)) {
    std::ifstream f(ref);
    std::getline(f, commit);
    if (!is_commit_hash(commit)) fail("[from_pretrained] ", ref.string(), " does not hold a commit hash (got '", commit, "')");
  } else if (is_commit_hash(rev)) {
    commit = rev;
  } else {
    fail("[from_pretrained] revision '", rev, "' of '", path_or_id, "' is not in the cache (no ", ref.string(), ").", how);
  }
  fs::path snap = repo / "snapshots" / commit;
  if (!fs::is_directory(snap))
    fail("[from_pretrained] snapshot ", snap.string(), " for revision '", rev, "' is missing.", how);
  fs::path p = opt.subfolder.empty() ? snap : snap / opt.subfolder;
  if (!fs::is_directory(p)) fail("[from_pretrained] subfolder '", opt.subfolder, "' not found in ", snap.string());
  return fs::absolute(p).lexically_normal().string();
}

ModelIndex read_model_index(const std::string& folder) {
  ModelIndex mi;
  mi.folder = folder;
  const std::string path = folder + "/model_index.json";
  std::ifstream f(path);
  if (!f) fail("[from_pretrained] ", folder, " has no model_index.json (not a diffusers pipeline folder)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    fail("[from_pretrained] ", path, ": not valid JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail("[from_pretrained] ", path, ": not a JSON object");
  if (j.contains("_class_name")) {
    if (!j["_class_name"].is_string())
      fail("[from_pretrained] ", path, ": '_class_name' must be a string, got ", j["_class_name"].dump());
    mi.class_name = j["_class_name"].get<std::string>();
  }
  for (auto& [k, v] : j.items()) {
    if (k.empty() || k[0] == '_') continue;
    if (v.is_array() && v.size() == 2 && v[0].is_string() && v[1].is_string())
      mi.components[k] = {v[0].get<std::string>(), v[1].get<std::string>()};
  }
  for (const char* need : {"scheduler", "text_encoder", "tokenizer", "transformer", "vae"}) {
    if (!mi.components.count(need)) fail("[from_pretrained] ", path, " declares no '", need, "' component");
    if (!fs::is_directory(mi.component_dir(need)))
      fail("[from_pretrained] ", folder, " is missing the '", need, "/' folder named in model_index.json");
  }
  return mi;
}

}  // namespace zimage
