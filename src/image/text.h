// UTF-8 / Latin-1 helpers for PNG text chunks (tEXt and zTXt are Latin-1, iTXt is UTF-8).
#pragma once
#include <optional>
#include <string>

namespace zimage::text {

// True if s is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool valid_utf8(const std::string& s);
// The Latin-1 bytes of a UTF-8 string whose code points are all <= U+00FF; nullopt otherwise.
std::optional<std::string> utf8_to_latin1(const std::string& s);
std::string latin1_to_utf8(const std::string& s);
// A PNG keyword: 1-79 printable Latin-1 characters (32-126, 161-255), no leading, trailing or
// doubled spaces. Returns the Latin-1 bytes or throws zimage::Error naming the key.
std::string png_keyword(const std::string& utf8_key);

}  // namespace zimage::text
