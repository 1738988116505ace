#include "pipeline/model_folder.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/error.h"
#include "hub/hub.h"

namespace zimage {
namespace fs = std::filesystem;

namespace {
bool looks_like_hub_id(const std::string& s) {
  static const std::regex re(R"(^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$)");
  return std::regex_match(s, re) && s.find("..") == std::string::npos;
}

bool is_commit_hash(const std::string& s) {
  static const std::regex re("^[0-9a-f]{40}$");
  return std::regex_match(s, re);
}
}  // namespace

std::string hf_cache_root(const std::string& cache_dir) { return hub::cache_root(cache_dir); }

namespace {
// The cached snapshot folder of a hub id's revision, or "" when the cache does not have it.
std::string cached_snapshot(const std::string& id, const ResolveOptions& opt) {
  const fs::path repo = fs::path(hf_cache_root(opt.cache_dir)) / hub::repo_folder_name(id);
  const std::string rev = opt.revision.empty() ? "main" : opt.revision;
  if (!hub::is_safe_repo_path(rev)) fail("[from_pretrained] invalid revision '", rev, "'");
  std::string commit;
  if (std::ifstream f(repo / "refs" / rev); f && std::getline(f, commit) && is_commit_hash(commit)) {
  } else if (is_commit_hash(rev)) {
    commit = rev;
  } else {
    return {};
  }
  const fs::path snap = repo / "snapshots" / commit;
  return fs::is_directory(snap) ? fs::absolute(snap).lexically_normal().string() : std::string();
}
}  // namespace

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
  // The Hugging Face cache first (no network when the snapshot is complete), else download it
  // (hub::pull: refused offline, with an error naming the missing files).
  std::string snap = opt.force_download ? std::string() : cached_snapshot(path_or_id, opt);
  if (snap.empty() || !hub::missing_pipeline_files(snap).empty()) {
    hub::PullOptions po;
    po.revision = opt.revision.empty() ? "main" : opt.revision;
    po.cache_dir = opt.cache_dir;
    po.token = opt.token;
    po.force_download = opt.force_download;
    po.local_files_only = opt.local_files_only;
    snap = hub::pull(path_or_id, po).snapshot;
  }
  fs::path p = opt.subfolder.empty() ? fs::path(snap) : fs::path(snap) / opt.subfolder;
  if (!fs::is_directory(p)) fail("[from_pretrained] subfolder '", opt.subfolder, "' not found in ", snap);
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
  mi.class_name = j.value("_class_name", "");
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
