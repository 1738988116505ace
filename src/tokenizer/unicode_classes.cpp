#include "tokenizer/unicode_classes.h"

#include <unicode/uniset.h>
#include <unicode/unistr.h>

#include <cstdio>

#include "core/error.h"

namespace zimage::tok {

namespace {
// Body of a PCRE2 class (no brackets) listing the ranges of an ICU UnicodeSet pattern.
std::string class_body(const std::string& icu_set, const std::string& origin) {
  UErrorCode st = U_ZERO_ERROR;
  icu::UnicodeSet set(icu::UnicodeString::fromUTF8(icu_set), st);
  if (U_FAILURE(st)) fail("[tokenizer] ", origin, ": unknown Unicode property in regex: ", icu_set);
  set.removeAll(icu::UnicodeSet(0xD800, 0xDFFF));  // not valid in UTF-8 patterns
  std::string out;
  char buf[48];
  for (int32_t r = 0; r < set.getRangeCount(); ++r) {
    const UChar32 a = set.getRangeStart(r), b = set.getRangeEnd(r);
    if (a == b)
      std::snprintf(buf, sizeof(buf), "\\x{%X}", unsigned(a));
    else
      std::snprintf(buf, sizeof(buf), "\\x{%X}-\\x{%X}", unsigned(a), unsigned(b));
    out += buf;
  }
  if (out.empty()) fail("[tokenizer] ", origin, ": regex class ", icu_set, " is empty");
  return out;
}
}  // namespace

std::string expand_unicode_classes(const std::string& p, const std::string& origin) {
  std::string out;
  out.reserve(p.size() * 4);
  bool in_class = false;
  auto emit = [&](const std::string& body, bool negated) {
    if (in_class) {
      if (negated)
        fail("[tokenizer] ", origin, ": regex '", p, "': a negated class escape inside [...] is not supported");
      out += body;
    } else {
      out += negated ? "[^" : "[";
      out += body;
      out += "]";
    }
  };
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && in_class) {
      in_class = false;
      out += c;
      continue;
    }
    if (c == '[' && in_class) {
      if (p.compare(i, 2, "[:") == 0)
        fail("[tokenizer] ", origin, ": regex '", p, "': POSIX classes are not supported");
      out += c;
      continue;
    }
    if (c != '\\' || i + 1 >= p.size()) {
      out += c;
      continue;
    }
    const char e = p[i + 1];
    if (e == 'p' || e == 'P') {
      const size_t close = p.find('}', i + 2);
      if (i + 2 >= p.size() || p[i + 2] != '{' || close == std::string::npos)
        fail("[tokenizer] ", origin, ": regex '", p, "': malformed \\", e, " at offset ", i);
      std::string name = p.substr(i + 3, close - (i + 3));
      bool negated = e == 'P';
      if (!name.empty() && name[0] == '^') {
        negated = !negated;
        name.erase(0, 1);
      }
      emit(class_body("[:" + name + ":]", origin), negated);
      i = close;
      continue;
    }
    if (e == 's' || e == 'S') {
      emit(class_body("[:White_Space:]", origin), e == 'S');
      ++i;
      continue;
    }
    if (e == 'd' || e == 'D') {
      emit(class_body("[:Nd:]", origin), e == 'D');
      ++i;
      continue;
    }
    if (std::string_view("wWbBhHvVRXKNuUoOgk").find(e) != std::string_view::npos)
      fail("[tokenizer] ", origin, ": regex '", p, "': escape \\", e, " is not supported");
    out += c;
    out += e;
    ++i;
  }
  if (in_class) fail("[tokenizer] ", origin, ": regex '", p, "': unterminated character class");
  return out;
}

}  // namespace zimage::tok
