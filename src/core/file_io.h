// Reading files that come from a model folder (or any other untrusted place): only regular
// files are opened (a FIFO, device or directory in place of a file is an error, never a hang),
// sizes are bounded before anything is allocated, and JSON nesting is bounded so that nothing
// that walks a parsed value recursively (copies, dump(), comparisons) can overflow the stack.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace zimage {

// Deepest nesting of arrays/objects accepted in any JSON file or text read by zimage (real
// configs and tokenizer files nest at most ~6 deep).
constexpr int kMaxJsonDepth = 128;

// An open file descriptor of a regular file, closed on destruction.
class RegularFile {
 public:
  // Opens `path` for reading. `prefix` starts every error message (e.g. "[tokenizer] "); the
  // message names the path and says what it is when it is not a regular file.
  RegularFile(const std::string& path, const std::string& prefix);
  ~RegularFile();
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
};

// "a directory", "a FIFO (named pipe)", ... for the file type of a stat mode, "" for a regular file.
std::string file_kind(unsigned mode);

// The whole content of the regular file `path`, refused when larger than `max_bytes`.
std::string read_regular_file(const std::string& path, uint64_t max_bytes, const std::string& prefix);

// Parses JSON text; errors are "<prefix><origin>: not valid JSON (...)" or "<prefix><origin>:
// JSON nested deeper than 128 levels". nlohmann's parser is iterative and its callback sees the
// depth, so the limit holds before any deep value is built. `on_key(depth, key)`, if given, sees
// every object key (depth 1 = keys of the top-level object).
using JsonKeyHook = std::function<void(int depth, const std::string& key)>;
nlohmann::json parse_json_text(std::string_view text, const std::string& origin, const std::string& prefix,
                               const JsonKeyHook& on_key = {});

// A JSON value for an error message: dump() cut to `max_chars` (with "..." when cut).
std::string json_excerpt(const nlohmann::json& v, size_t max_chars = 80);

// read_regular_file + parse_json_text. Limit for config-sized files.
constexpr uint64_t kMaxJsonFileBytes = 64ull << 20;
nlohmann::json parse_json_file(const std::string& path, const std::string& prefix,
                               uint64_t max_bytes = kMaxJsonFileBytes);

}  // namespace zimage
