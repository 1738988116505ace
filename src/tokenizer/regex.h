// A PCRE2 regex compiled with UTF and UCP (real Unicode classes), as the Split pre-tokenizer
// needs; JIT-compiled when available.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zimage::tok {

class Regex {
 public:
  // Errors name `origin`, the pattern and PCRE2's message with the offset.
  Regex(const std::string& pattern, const std::string& origin);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping leftmost-first matches [begin, end) in valid UTF-8 `text`, in order.
  // Empty matches are left out (they make no piece).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zimage::tok
