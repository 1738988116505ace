// GPT-2's byte <-> unicode alphabet used by the ByteLevel pre-tokenizer and decoder: printable
// bytes map to themselves, the other 68 bytes to U+0100.. in byte order.
#pragma once
#include <array>
#include <string>
#include <string_view>

namespace zimage::tok {

class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet();
  // Code point that byte b is written as.
  char32_t char_of(unsigned char b) const { return byte_to_char_[b]; }
  // UTF-8 text of byte b's code point.
  const std::string& utf8_of(unsigned char b) const { return byte_to_utf8_[b]; }
  // Byte that code point c stands for, or -1 when c is not in the alphabet.
  int byte_of(char32_t c) const;
  // Maps every byte of `bytes` to its alphabet character (the ByteLevel pre-tokenizer).
  std::string encode(std::string_view bytes) const;
  // The ByteLevel decoder on one token: its characters back to bytes, or the token's own UTF-8
  // bytes when one of its characters is outside the alphabet (as tokenizers does).
  std::string decode_token(std::string_view token) const;

 private:
  std::array<char32_t, 256> byte_to_char_{};
  std::array<std::string, 256> byte_to_utf8_{};
  std::array<short, 324> char_to_byte_{};  // all alphabet code points are < 324
};

const ByteLevelAlphabet& byte_level_alphabet();

}  // namespace zimage::tok
