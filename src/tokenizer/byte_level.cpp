#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace zimage::tok {

ByteLevelAlphabet::ByteLevelAlphabet() {
  char_to_byte_.fill(-1);
  auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const char32_t c = printable(b) ? char32_t(b) : char32_t(256 + n++);
    byte_to_char_[b] = c;
    char_to_byte_[c] = short(b);
    utf8_append(byte_to_utf8_[b], c);
  }
}

int ByteLevelAlphabet::byte_of(char32_t c) const { return c < char_to_byte_.size() ? char_to_byte_[c] : -1; }

std::string ByteLevelAlphabet::encode(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += byte_to_utf8_[b];
  return out;
}

std::string ByteLevelAlphabet::decode_token(std::string_view token) const {
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    const int b = byte_of(utf8_next(token, i));
    if (b < 0) return std::string(token);
    out += char(b);
  }
  return out;
}

const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet a;
  return a;
}

}  // namespace zimage::tok
