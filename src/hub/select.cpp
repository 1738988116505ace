// Which repository files a pull takes, and the name checks applied to everything the hub lists.
#include <fnmatch.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "core/error.h"
#include "hub/hub.h"

namespace zimage::hub {

namespace {
std::string env(const char* k) {
  const char* v = std::getenv(k);
  return v ? std::string(v) : std::string();
}
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower((unsigned char)c));
  return s;
}
}  // namespace

std::string cache_root(const std::string& cache_dir) {
  if (!cache_dir.empty()) return cache_dir;
  if (auto v = env("HF_HUB_CACHE"); !v.empty()) return v;
  if (auto v = env("HUGGINGFACE_HUB_CACHE"); !v.empty()) return v;
  if (auto v = env("HF_HOME"); !v.empty()) return v + "/hub";
  if (auto v = env("XDG_CACHE_HOME"); !v.empty()) return v + "/huggingface/hub";
  return env("HOME") + "/.cache/huggingface/hub";
}

bool is_repo_id(const std::string& s) {
  static const std::regex re(R"(^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$)");
  return std::regex_match(s, re) && s.find("..") == std::string::npos;
}

std::string repo_folder_name(const std::string& repo_id) {
  if (!is_repo_id(repo_id)) fail("[hub] '", repo_id, "' is not a hub repository id like 'Tongyi-MAI/Z-Image-Turbo'");
  std::string s = "models--" + repo_id;
  s.replace(s.find('/'), 1, "--");
  return s;
}

bool offline_from_env() {
  const std::string v = lower(env("HF_HUB_OFFLINE"));
  return v == "1" || v == "true" || v == "yes" || v == "on";
}

std::string token_from_env() {
  auto trim = [](std::string s) {
    s.erase(0, s.find_first_not_of(" \t\r\n"));
    s.erase(s.find_last_not_of(" \t\r\n") + 1);
    return s;
  };
  if (auto t = trim(env("HF_TOKEN")); !t.empty()) return t;
  std::string path = env("HF_TOKEN_PATH");
  if (path.empty()) {
    std::string home = env("HF_HOME");
    if (home.empty())
      home = (env("XDG_CACHE_HOME").empty() ? env("HOME") + "/.cache" : env("XDG_CACHE_HOME")) + "/huggingface";
    path = home + "/token";
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return {};
  std::string s(4096, '\0');
  s.resize(std::fread(s.data(), 1, s.size(), f));
  std::fclose(f);
  return trim(s);
}

std::string endpoint_from_env() {
  std::string e = env("HF_ENDPOINT");
  if (e.empty()) e = "https://huggingface.co";
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

bool is_safe_repo_path(const std::string& p) {
  if (p.empty() || p.size() > 4096 || p[0] == '/') return false;
  for (unsigned char c : p)
    if (c < 0x20 || c == 0x7f || c == '\\') return false;
  size_t a = 0;
  while (true) {
    size_t b = p.find('/', a);
    std::string part = p.substr(a, b == std::string::npos ? std::string::npos : b - a);
    if (part.empty() || part == "." || part == "..") return false;
    if (b == std::string::npos) return true;
    a = b + 1;
  }
}

bool glob_match(const std::string& pattern, const std::string& path) {
  std::string pat = pattern;
  if (!pat.empty() && pat.back() == '/') pat += "*";  // as huggingface_hub's filter_repo_objects
  return fnmatch(pat.c_str(), path.c_str(), 0) == 0;
}

namespace {
// Weights in a format zimage does not read, and anything else that is not a config/tokenizer file.
bool is_support_file(const std::string& name) {
  for (const char* ext : {".json", ".txt", ".jinja", ".model", ".tiktoken"})
    if (ends_with(lower(name), ext)) return true;
  return false;
}
}  // namespace

std::vector<std::string> pipeline_files(const std::vector<std::string>& listing,
                                        const std::vector<std::string>& components) {
  std::set<std::string> have(listing.begin(), listing.end());
  std::vector<std::string> out;
  if (have.count("model_index.json")) out.push_back("model_index.json");
  for (const auto& comp : components) {
    const std::string dir = comp + "/";
    // Weights, as WeightStore::open_dir picks them.
    std::string weights;
    for (const char* stem : {"diffusion_pytorch_model", "model"}) {
      if (have.count(dir + stem + ".safetensors"))
        weights = dir + stem + ".safetensors";
      else if (have.count(dir + stem + ".safetensors.index.json"))
        weights = dir + stem + ".safetensors.index.json";
      if (!weights.empty()) break;
    }
    for (const auto& f : listing) {
      if (f.rfind(dir, 0) != 0 || f.find('/', dir.size()) != std::string::npos) continue;  // directly in the folder
      if (f == weights) continue;
      if (!is_support_file(f)) continue;
      if (f.find(".safetensors.index") != std::string::npos || f.find(".bin.index") != std::string::npos) continue;
      out.push_back(f);
    }
    if (!weights.empty()) out.push_back(weights);
  }
  return out;
}

std::vector<std::string> index_shards(const std::string& index_path, const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("[hub] ", index_path, ": not valid JSON (", e.what(), ")");
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    fail("[hub] ", index_path, ": has no 'weight_map' object");
  const std::string dir = index_path.substr(0, index_path.rfind('/') + 1);
  std::set<std::string> shards;
  for (auto& [name, v] : j["weight_map"].items()) {
    if (!v.is_string()) fail("[hub] ", index_path, ": weight_map entry for '", name, "' is not a string");
    const std::string s = v.get<std::string>();
    if (s.find('/') != std::string::npos || !is_safe_repo_path(s) || !ends_with(s, ".safetensors"))
      fail("[hub] ", index_path, ": refusing shard name '", s, "' (must be a .safetensors file in the same folder)");
    shards.insert(dir + s);
  }
  return {shards.begin(), shards.end()};
}

}  // namespace zimage::hub
