// LoRAs of `zimage serve` (issue 15): the files given with --lora (each runs in every request at
// its scale), the files under --lora-dir (loaded when a prompt names them), and the A1111 prompt
// syntax `<lora:NAME:SCALE>` with which a request picks them and sets their scales. A request can
// only name what the server was started with: never a path of its own choosing.
#pragma once
#include <string>
#include <vector>

namespace zimage::server {

struct LoraTag {
  std::string name;
  double scale = 1.0;
};

// Removes every `<lora:NAME>` / `<lora:NAME:SCALE>` from `prompt` (then trims its ends) and returns
// them in order. RequestError 400 (field "prompt"): an unterminated tag, an empty name, a name over
// 200 bytes or with characters outside [A-Za-z0-9 _.+()/-], an absolute name or one with a "."
// or ".." component, a scale that is not a number in [-100, 100], a name twice, over 16 tags.
std::vector<LoraTag> extract_lora_tags(std::string& prompt);

struct LoraFile {
  std::string name, path;
  double scale = 1.0;
  std::string sha256;
};

class LoraCatalog {
 public:
  // `files`: --lora (name = the file's stem); `dir`: --lora-dir ("" = none).
  LoraCatalog(std::vector<LoraFile> files, std::string dir);
  const std::vector<LoraFile>& files() const { return files_; }
  const std::string& dir() const { return dir_; }
  const LoraFile* file(const std::string& name) const;
  // The file a prompt's NAME means: a --lora file's name, else <dir>/NAME.safetensors (or NAME
  // when it ends in .safetensors), which must be a regular file that, with symlinks resolved, lies
  // inside the directory. RequestError 400 (field "prompt") naming what the server has otherwise.
  std::string resolve(const std::string& name) const;

 private:
  std::vector<LoraFile> files_;
  std::string dir_, dir_canonical_;
};

}  // namespace zimage::server
