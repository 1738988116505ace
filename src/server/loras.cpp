#include "server/loras.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "server/request.h"

namespace zimage::server {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void bad(const std::string& what) { throw RequestError(400, "prompt", "[serve] 'prompt': " + what); }

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' || c == '_' ||
         c == '.' || c == '+' || c == '(' || c == ')' || c == '/' || c == '-';
}

void check_name(const std::string& name, const std::string& tag) {
  if (name.empty()) bad(tag + " names no LoRA");
  if (name.size() > 200) bad("a <lora:...> name is longer than 200 bytes");
  for (char c : name)
    if (!name_char(c)) bad(tag + ": a LoRA name holds only letters, digits, spaces and _ . + ( ) / -");
  if (name.front() == '/') bad(tag + ": a LoRA name is not an absolute path");
  size_t b = 0;
  for (size_t i = 0; i <= name.size(); ++i)
    if (i == name.size() || name[i] == '/') {
      const std::string part = name.substr(b, i - b);
      if (part.empty() || part == "." || part == "..") bad(tag + ": a LoRA name has no empty, '.' or '..' parts");
      b = i + 1;
    }
}

}  // namespace

std::vector<LoraTag> extract_lora_tags(std::string& prompt) {
  static const std::string open = "<lora:";
  std::vector<LoraTag> tags;
  std::string out;
  size_t i = 0;
  for (;;) {
    const size_t s = prompt.find(open, i);
    if (s == std::string::npos) break;
    const size_t e = prompt.find('>', s);
    if (e == std::string::npos) bad("a <lora: tag has no closing '>'");
    const std::string body = prompt.substr(s + open.size(), e - s - open.size());
    const std::string tag = "<lora:" + body.substr(0, 64) + (body.size() > 64 ? "..." : "") + ">";
    LoraTag t;
    const size_t c = body.rfind(':');
    t.name = body.substr(0, c);
    if (c != std::string::npos) {
      const std::string v = body.substr(c + 1);
      char* end = nullptr;
      t.scale = v.empty() ? NAN : std::strtod(v.c_str(), &end);
      if (v.empty() || *end != 0 || !(t.scale >= -100 && t.scale <= 100))
        bad(tag + ": the scale '" + v.substr(0, 32) + "' is not a number in [-100, 100]");
    }
    check_name(t.name, tag);
    for (const auto& o : tags)
      if (o.name == t.name) bad(tag + ": LoRA '" + t.name + "' is named twice");
    if (tags.size() == 16) bad("more than 16 <lora:...> tags");
    tags.push_back(t);
    out += prompt.substr(i, s - i);
    i = e + 1;
  }
  if (tags.empty()) return tags;
  out += prompt.substr(i);
  const size_t b = out.find_first_not_of(" \t\r\n"), l = out.find_last_not_of(" \t\r\n");
  prompt = b == std::string::npos ? "" : out.substr(b, l - b + 1);
  return tags;
}

LoraCatalog::LoraCatalog(std::vector<LoraFile> files, std::string dir)
    : files_(std::move(files)), dir_(std::move(dir)) {
  if (!dir_.empty()) {
    std::error_code ec;
    dir_canonical_ = fs::canonical(dir_, ec).string();
    if (ec || !fs::is_directory(dir_canonical_, ec)) fail("[serve] --lora-dir ", dir_, " is not a directory");
  }
}

const LoraFile* LoraCatalog::file(const std::string& name) const {
  for (const auto& f : files_)
    if (f.name == name) return &f;
  return nullptr;
}

std::string LoraCatalog::resolve(const std::string& name) const {
  if (const LoraFile* f = file(name)) return f->path;
  auto have = [&] {
    std::string s;
    for (const auto& f : files_) s += (s.empty() ? "" : ", ") + f.name;
    return "(--lora: " + (s.empty() ? std::string("none") : s) +
           "; --lora-dir: " + (dir_.empty() ? "none" : "its .safetensors files") + ")";
  };
  if (dir_.empty()) bad("<lora:" + name + ">: the server has no LoRA of that name " + have());
  check_name(name, "<lora:" + name + ">");
  const bool ext = name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0;
  std::error_code ec;
  const fs::path p = fs::weakly_canonical(fs::path(dir_canonical_) / (ext ? name : name + ".safetensors"), ec);
  const std::string ps = p.string();
  if (ec || ps.compare(0, dir_canonical_.size() + 1, dir_canonical_ + "/") != 0 || !fs::is_regular_file(p, ec))
    bad("<lora:" + name + ">: the server has no LoRA of that name " + have());
  return ps;
}

}  // namespace zimage::server
