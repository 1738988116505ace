// tokenizers' AddedVocabulary: added tokens are found in the text (leftmost-longest, as its
// Aho-Corasick matcher) and split out whole before normalization and pre-tokenization; tokens
// marked `normalized` are matched in the normalized remainder instead. lstrip/rstrip swallow
// whitespace around a match, single_word rejects matches inside a word.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zimage::tok {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// One piece of the input: either an added token (id >= 0) or text for the model (id < 0).
struct Segment {
  std::string_view text;
  int32_t id = -1;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[k]` is the text matched for tokens[k] (its content, or its normalized content).
  AddedTokenMatcher(std::vector<AddedToken> tokens, std::vector<std::string> patterns);

  bool empty() const { return tokens_.empty(); }
  // Splits valid UTF-8 `text` into segments covering it.
  std::vector<Segment> split(std::string_view text) const;

 private:
  std::vector<AddedToken> tokens_;
  std::vector<std::string> patterns_;
  std::vector<std::vector<int>> by_first_byte_;  // pattern indices, longest first
};

}  // namespace zimage::tok
