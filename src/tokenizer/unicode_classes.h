// Unicode character classes for the Split regex, computed from ICU's property data.
//
// tokenizers runs the Split pattern with Oniguruma, whose tables are Unicode 15 and whose \s is
// the White_Space property. PCRE2 10.42 (Debian 12) carries Unicode 14 tables and its UCP \s
// also matches U+180E, so \p{..}, \s and \d in a pattern are rewritten into explicit classes
// built from ICU (Unicode 15.0) before PCRE2 compiles it; everything else stays PCRE2 syntax.
#pragma once
#include <string>

namespace zimage::tok {

// Rewrites the class escapes of an Oniguruma-style pattern into PCRE2 classes from ICU data.
// Errors (naming `origin`) on escapes whose meaning differs between the engines (\w, \b, \h, \v, ...).
std::string expand_unicode_classes(const std::string& pattern, const std::string& origin);

}  // namespace zimage::tok
