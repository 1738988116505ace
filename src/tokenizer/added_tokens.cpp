#include "tokenizer/added_tokens.h"

#include <unicode/uchar.h>

#include <algorithm>

#include "tokenizer/utf8.h"

namespace zimage::tok {

namespace {
// Rust regex's Unicode \w (UTS#18): Alphabetic, marks, decimal numbers, connector punctuation,
// Join_Control.
bool is_word_char(char32_t c) {
  const auto cp = UChar32(c);
  if (u_hasBinaryProperty(cp, UCHAR_ALPHABETIC) || u_hasBinaryProperty(cp, UCHAR_JOIN_CONTROL)) return true;
  const int8_t t = u_charType(cp);
  return t == U_NON_SPACING_MARK || t == U_ENCLOSING_MARK || t == U_COMBINING_SPACING_MARK ||
         t == U_DECIMAL_DIGIT_NUMBER || t == U_CONNECTOR_PUNCTUATION;
}
// Rust regex's Unicode \s: White_Space.
bool is_space(char32_t c) { return u_isUWhiteSpace(UChar32(c)); }
}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens, std::vector<std::string> patterns)
    : tokens_(std::move(tokens)), patterns_(std::move(patterns)), by_first_byte_(256) {
  for (size_t k = 0; k < patterns_.size(); ++k)
    if (!patterns_[k].empty()) by_first_byte_[static_cast<unsigned char>(patterns_[k][0])].push_back(int(k));
  for (auto& v : by_first_byte_)
    std::stable_sort(v.begin(), v.end(),
                     [&](int a, int b) { return patterns_[size_t(a)].size() > patterns_[size_t(b)].size(); });
}

std::vector<Segment> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<Segment> out;
  size_t start_offset = 0;  // end of the last emitted segment
  size_t pos = 0;           // where the next match search starts
  while (pos < text.size()) {
    // Leftmost-longest: the first position where any pattern matches, the longest one there.
    int found = -1;
    size_t at = pos;
    for (; at < text.size(); ++at) {
      const auto& cands = by_first_byte_[static_cast<unsigned char>(text[at])];
      for (int k : cands)
        if (text.compare(at, patterns_[size_t(k)].size(), patterns_[size_t(k)]) == 0) {
          found = k;
          break;
        }
      if (found >= 0) break;
    }
    if (found < 0) break;
    const AddedToken& tok = tokens_[size_t(found)];
    size_t start = at, stop = at + patterns_[size_t(found)].size();
    pos = stop;  // the matcher resumes after the raw match, whatever stripping does
    if (tok.single_word) {
      bool word_before = false, word_after = false;
      if (start > 0) {
        size_t i = start;
        word_before = is_word_char(utf8_prev(text, i));
      }
      if (stop < text.size()) {
        size_t i = stop;
        word_after = is_word_char(utf8_next(text, i));
      }
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) {
      size_t i = start;
      while (i > 0) {
        size_t j = i;
        if (!is_space(utf8_prev(text, j))) break;
        i = j;
      }
      start = std::max(i, start_offset);
    }
    if (tok.rstrip) {
      size_t i = stop;
      while (i < text.size()) {
        size_t j = i;
        if (!is_space(utf8_next(text, j))) break;
        i = j;
      }
      stop = i;
    }
    if (start_offset < start) out.push_back(Segment{text.substr(start_offset, start - start_offset), -1});
    out.push_back(Segment{text.substr(start, stop - start), tok.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back(Segment{text.substr(start_offset), -1});
  return out;
}

}  // namespace zimage::tok
