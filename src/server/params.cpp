#include "server/params.h"

#include <charconv>
#include <limits>
#include <random>

#include "core/error.h"
#include "image/text.h"

namespace zimage::params {

void check_prompt_text(const std::vector<std::string>& prompts, const char* what, const char* component) {
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string& p = prompts[i];
    const std::string name = prompts.size() == 1 ? std::string(what) : std::string(what) + " " + std::to_string(i + 1);
    if (size_t z = p.find('\0'); z != std::string::npos)
      fail(component, name, " contains a NUL character (at byte ", z, "), which PNG text cannot hold");
    if (!text::valid_utf8(p)) fail(component, name, " is not valid UTF-8");
  }
}

std::optional<uint64_t> parse_seed(const std::string& s, const char* what, const char* component) {
  if (s == "-1") return std::nullopt;
  uint64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size())
    fail(component, what, " '", s, "' is not a seed: give an integer in [0, ", std::numeric_limits<uint64_t>::max(),
         "], or -1 for a random seed");
  return v;
}

uint64_t random_seed() {
  std::random_device rd;
  return ((uint64_t(rd()) << 32) | rd()) >> 1;
}

}  // namespace zimage::params
