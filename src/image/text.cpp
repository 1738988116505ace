#include "image/text.h"

#include "core/error.h"

namespace zimage::text {

namespace {
// Decodes one code point at s[i]; returns its length or 0 when malformed.
size_t decode(const std::string& s, size_t i, uint32_t& cp) {
  const auto b = [&](size_t k) { return uint8_t(s[i + k]); };
  const size_t n = s.size() - i;
  uint8_t c = b(0);
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  size_t len;
  uint32_t min;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
    min = 0x10000;
  } else
    return 0;
  if (n < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}
}  // namespace

bool valid_utf8(const std::string& s) {
  uint32_t cp;
  for (size_t i = 0; i < s.size();) {
    size_t n = decode(s, i, cp);
    if (!n) return false;
    i += n;
  }
  return true;
}

std::optional<std::string> utf8_to_latin1(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  uint32_t cp;
  for (size_t i = 0; i < s.size();) {
    size_t n = decode(s, i, cp);
    if (!n || cp > 0xFF) return std::nullopt;
    out.push_back(char(uint8_t(cp)));
    i += n;
  }
  return out;
}

std::string latin1_to_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    uint8_t c = uint8_t(ch);
    if (c < 0x80) {
      out.push_back(ch);
    } else {
      out.push_back(char(0xC0 | (c >> 6)));
      out.push_back(char(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

std::string png_keyword(const std::string& utf8_key) {
  auto k = utf8_to_latin1(utf8_key);
  if (!k) fail("[image] PNG text key '", utf8_key, "' is not Latin-1 (PNG keywords must be)");
  if (k->empty() || k->size() > 79)
    fail("[image] PNG text key '", utf8_key, "' must have 1-79 characters, has ", k->size());
  for (size_t i = 0; i < k->size(); ++i) {
    uint8_t c = uint8_t((*k)[i]);
    bool printable = (c >= 32 && c <= 126) || c >= 161;
    if (!printable) fail("[image] PNG text key '", utf8_key, "' has a non-printable character at ", i);
    if (c == ' ' && (i == 0 || i + 1 == k->size() || (*k)[i + 1] == ' '))
      fail("[image] PNG text key '", utf8_key, "' has leading, trailing or double spaces");
  }
  return *k;
}

}  // namespace zimage::text
