// UTF-8 helpers for the tokenizer: strict validation (as Rust's str), code point stepping, and
// the lossy bytes -> text conversion that tokenizers' ByteLevel decoder uses (String::from_utf8_lossy).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace zimage::tok {

// Byte offset of the first invalid UTF-8 sequence in s, or npos when s is valid UTF-8
// (no overlongs, no surrogates, nothing above U+10FFFF).
size_t utf8_invalid_at(std::string_view s);

// Decodes the code point starting at s[i] (s must be valid UTF-8) and advances i past it.
char32_t utf8_next(std::string_view s, size_t& i);
// Decodes the code point that ends at s[i] (exclusive) and moves i back to its first byte.
char32_t utf8_prev(std::string_view s, size_t& i);
// Appends the UTF-8 encoding of cp.
void utf8_append(std::string& out, char32_t cp);

// Replaces each maximal invalid subsequence with U+FFFD, exactly as Rust's String::from_utf8_lossy.
std::string utf8_lossy(std::string_view bytes);

}  // namespace zimage::tok
