// The pre-tokenizer declared in tokenizer.json: a Sequence of Split (PCRE2 regex, behavior
// Isolated or Removed) and ByteLevel (bytes -> GPT-2 alphabet, optional GPT-2 regex split) steps,
// applied in order to each piece of text.
#pragma once
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace zimage::tok {

class PreTokenizer {
 public:
  static PreTokenizer from_json(const nlohmann::json& j, const std::string& origin);

  // Splits normalized text into the words the model tokenizes (each non-empty).
  std::vector<std::string> apply(std::string_view text) const;
  // Whether a ByteLevel step maps pieces to the GPT-2 alphabet.
  bool byte_level() const;

 private:
  struct Step {
    enum class Kind { Split, ByteLevel } kind;
    std::shared_ptr<Regex> regex;  // Split, or ByteLevel with use_regex
    bool remove_matches = false;   // Split behavior Removed (invert swaps matches and gaps)
    bool invert = false;
  };
  static void add_step(PreTokenizer& p, const nlohmann::json& j, const std::string& origin);
  std::vector<Step> steps_;
};

}  // namespace zimage::tok
