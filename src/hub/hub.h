// Hugging Face hub client: downloads a model repository (or some of its files) into the cache
// layout that huggingface_hub writes, so that zimage, diffusers and `hf download` share one copy:
//   <cache>/models--ORG--NAME/blobs/<etag>                (file contents; <etag>.incomplete while
//                                                          downloading, resumed with Range)
//   <cache>/models--ORG--NAME/snapshots/<commit>/<path>   (relative symlinks to the blobs)
//   <cache>/models--ORG--NAME/refs/<revision>             (the commit a branch or tag points to)
// Only HTTPS to the endpoint's host and the hub's CDN hosts; see DESIGN.md "Hub downloads".
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace zimage::hub {

struct PullOptions {
  std::string revision = "main";
  std::string cache_dir;          // "" = cache_root("")
  std::string endpoint;           // "" = HF_ENDPOINT or https://huggingface.co
  std::string token;              // "" = HF_TOKEN or the token file (HF_TOKEN_PATH, HF_HOME/token)
  bool force_download = false;    // download again even when the file is in the cache
  bool local_files_only = false;  // never touch the network (HF_HUB_OFFLINE=1 does the same)
  // Default selection: what ZImagePipeline needs (pipeline_files()). --include adds files
  // matching a glob (fnmatch, '*' also matches '/'), --exclude removes them.
  std::vector<std::string> include, exclude;
  // When not empty: exactly these repository files (e.g. one GGUF), nothing else.
  std::vector<std::string> files;
  int jobs = 4;                                                              // files downloaded in parallel
  enum class Progress { Auto, Bar, Lines, None } progress = Progress::Auto;  // Auto: Bar on a TTY
};

struct PullResult {
  std::string snapshot;  // <cache>/models--ORG--NAME/snapshots/<commit>
  std::string commit;
  std::vector<std::string> files;  // the selected repository paths
  size_t downloaded_files = 0;     // how many were not in the cache yet
  uint64_t downloaded_bytes = 0;   // bytes transferred (resumed parts not counted twice)
};

// Downloads what is selected (skipping what the cache already has) and returns the snapshot.
PullResult pull(const std::string& repo_id, const PullOptions& opt);

// The hub cache root (cache_dir > HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > HF_HOME/hub >
// XDG_CACHE_HOME/huggingface/hub > ~/.cache/huggingface/hub).
std::string cache_root(const std::string& cache_dir);
// "models--ORG--NAME"
std::string repo_folder_name(const std::string& repo_id);
// The commit a cache's refs/<revision> file names (its first line), "" when there is no such file.
// Only a regular file is read (a FIFO there is an error, not a hang).
std::string read_ref(const std::string& ref_path);
// A hub id "org/name" (letters, digits, '.', '_', '-'; no "..").
bool is_repo_id(const std::string& s);
// HF_HUB_OFFLINE set to 1/true/yes/on.
bool offline_from_env();
// HF_TOKEN, else the token file (HF_TOKEN_PATH, else HF_HOME/token, else ~/.cache/huggingface/token).
std::string token_from_env();
// HF_ENDPOINT without a trailing slash, else https://huggingface.co.
std::string endpoint_from_env();

// --- pieces, exposed for tests ---------------------------------------------------------------

// A repository path is safe when it is relative, has no empty, "." or ".." component, no
// backslash and no control character: it cannot leave the snapshot folder.
bool is_safe_repo_path(const std::string& path);
// Python fnmatch semantics ('*' matches '/' too); a pattern ending in '/' matches the folder.
bool glob_match(const std::string& pattern, const std::string& path);

// The default selection from a repository listing: model_index.json; per component folder named
// in model_index.json its *.json / *.txt / *.jinja / *.model files (configs, tokenizer files,
// safetensors indexes) and its weights the way WeightStore::open_dir picks them:
// diffusion_pytorch_model.safetensors or model.safetensors, else the sharded index (the shards
// are added by the caller from the index). Skipped: other precisions' variants
// (x.fp16.safetensors, x.safetensors.index.bf16.json), .bin/.pt/.ckpt/.msgpack/.onnx duplicates,
// images and docs. `components` are the component folder names from model_index.json.
std::vector<std::string> pipeline_files(const std::vector<std::string>& listing,
                                        const std::vector<std::string>& components);
// What ZImagePipeline needs that a snapshot folder lacks (model_index.json, component folders,
// configs, tokenizer files, weights and the shards their index names), as repository paths.
std::vector<std::string> missing_pipeline_files(const std::string& snapshot);
// The shard file names (relative to the repository root) that a *.safetensors.index.json at
// `index_path` maps to. Names are checked (no "..", no '/').
std::vector<std::string> index_shards(const std::string& index_path, const std::string& index_json_text);

}  // namespace zimage::hub
