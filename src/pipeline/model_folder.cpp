#include "pipeline/model_folder.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <vector>

#include "core/error.h"
#include "core/file_io.h"
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
  if (commit = hub::read_ref((repo / "refs" / rev).string()); is_commit_hash(commit)) {
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
  if (fs::exists(path_or_id, ec) && !fs::is_regular_file(path_or_id, ec))
    fail("[from_pretrained] '", path_or_id,
         "' is not a folder (pass the diffusers folder that holds model_index.json)");
  if (fs::exists(path_or_id, ec)) {
    const std::string ext = fs::path(path_or_id).extension().string();
    if (ext == ".safetensors" || ext == ".gguf" || ext == ".ckpt" || ext == ".pt" || ext == ".bin")
      fail("[from_pretrained] '", path_or_id, "' is a file, not a model folder: loading a single ", ext,
           " checkpoint is not supported yet; pass the diffusers folder that holds model_index.json");
    fail("[from_pretrained] '", path_or_id,
         "' is a file, not a model folder (pass the diffusers folder that holds model_index.json)");
  }
  if (!looks_like_hub_id(path_or_id))
    fail("[from_pretrained] model folder '", path_or_id,
         "' does not exist (and is not a hub id like 'Tongyi-MAI/Z-Image-Turbo')");
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

namespace {
// What model_index.json may name: the Z-Image base-model pipelines of diffusers (they share these
// five components) and, per component, [library, class] pairs that load the same weights.
const std::vector<std::string> kPipelineClasses = {"ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline"};
struct ComponentClasses {
  const char* name;
  const char* library;
  std::vector<std::string> classes;
};
const std::vector<ComponentClasses> kComponents = {
    {"scheduler", "diffusers", {"FlowMatchEulerDiscreteScheduler"}},
    {"text_encoder", "transformers", {"Qwen3Model", "Qwen3ForCausalLM"}},
    {"tokenizer", "transformers", {"Qwen2Tokenizer", "Qwen2TokenizerFast"}},
    {"transformer", "diffusers", {"ZImageTransformer2DModel"}},
    {"vae", "diffusers", {"AutoencoderKL"}},
};

std::string one_of(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? (i + 1 == v.size() ? " or " : ", ") : "") + ("\"" + v[i] + "\"");
  return s;
}
}  // namespace

ModelIndex read_model_index(const std::string& folder) {
  ModelIndex mi;
  mi.folder = folder;
  const std::string path = folder + "/model_index.json";
  std::error_code ec;
  if (!fs::exists(path, ec))
    fail("[from_pretrained] ", folder, " has no model_index.json (not a diffusers pipeline folder)");
  const nlohmann::json j = parse_json_file(path, "[from_pretrained] ");
  if (!j.is_object()) fail("[from_pretrained] ", path, ": not a JSON object");
  auto bad = [&](const std::string& key, const std::string& why) {
    fail("[from_pretrained] ", path, ": '", key, "' ", why);
  };
  if (!j.contains("_class_name")) bad("_class_name", "is missing (expected \"ZImagePipeline\")");
  const nlohmann::json& cls = j["_class_name"];
  if (!cls.is_string()) bad("_class_name", "should be a string, got " + json_excerpt(cls));
  mi.class_name = cls.get<std::string>();
  if (std::find(kPipelineClasses.begin(), kPipelineClasses.end(), mi.class_name) == kPipelineClasses.end())
    bad("_class_name",
        "= \"" + mi.class_name + "\" is not a Z-Image pipeline (expected " + one_of(kPipelineClasses) + ")");
  for (auto& [k, v] : j.items()) {
    if (k.empty() || k[0] == '_') continue;
    if (v.is_array() && v.size() == 2 && v[0].is_string() && v[1].is_string())
      mi.components[k] = {v[0].get<std::string>(), v[1].get<std::string>()};
  }
  for (const auto& need : kComponents) {
    if (!j.contains(need.name)) fail("[from_pretrained] ", path, " declares no '", need.name, "' component");
    const std::string expected = "[\"" + std::string(need.library) + "\", " + one_of(need.classes) + "]";
    const nlohmann::json& v = j[need.name];
    if (!mi.components.count(need.name))
      bad(need.name, "should be a [\"library\", \"ClassName\"] pair like " + expected + ", got " + json_excerpt(v));
    const auto& [lib, cls_name] = mi.components.at(need.name);
    if (lib != need.library || std::find(need.classes.begin(), need.classes.end(), cls_name) == need.classes.end())
      bad(need.name, "= " + json_excerpt(v) + " is not supported (expected " + expected + ")");
    const std::string dir = mi.component_dir(need.name);
    if (!fs::is_directory(dir, ec)) {
      if (fs::exists(dir, ec))
        fail("[from_pretrained] ", dir, " is not a folder (model_index.json names the '", need.name, "' component)");
      fail("[from_pretrained] ", folder, " is missing the '", need.name, "/' folder named in model_index.json");
    }
  }
  return mi;
}

}  // namespace zimage
