// Checks shared by `zimage generate` and `zimage serve`: the same prompt text and seed rules
// whether a value comes from the command line or from an HTTP request.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace zimage::params {

// Prompts end up in PNG text chunks: refuses NUL characters and invalid UTF-8.
// Errors: "<component>{what}[ i] contains a NUL character (at byte z), which PNG text cannot hold",
//         "<component>{what}[ i] is not valid UTF-8" (component e.g. "[generate] ").
void check_prompt_text(const std::vector<std::string>& prompts, const char* what, const char* component);

// A seed as text: an integer in [0, 2^64-1] exactly, or "-1" (nullopt: a random seed).
// Anything else: "<component><what> '<s>' is not a seed: give an integer in [0, 18446744073709551615], or -1 for a
// random seed".
std::optional<uint64_t> parse_seed(const std::string& s, const char* what, const char* component);

// A random 63-bit seed (fits signed 64-bit readers too).
uint64_t random_seed();

}  // namespace zimage::params
