#include "tokenizer/normalizer.h"

#include <unicode/normalizer2.h>
#include <unicode/uniset.h>
#include <unicode/unistr.h>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace zimage::tok {

namespace {
Normalizer::Form parse_form(const nlohmann::json& j, const std::string& origin) {
  const std::string type =
      j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
  if (type == "NFC") return Normalizer::Form::NFC;
  if (type == "NFD") return Normalizer::Form::NFD;
  if (type == "NFKC") return Normalizer::Form::NFKC;
  if (type == "NFKD") return Normalizer::Form::NFKD;
  fail("[tokenizer] ", origin, ": unsupported normalizer ", j.dump(), " (supported: NFC, NFD, NFKC, NFKD, Sequence)");
}

const icu::Normalizer2& instance(Normalizer::Form f) {
  UErrorCode st = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (f) {
    case Normalizer::Form::NFC:
      n = icu::Normalizer2::getNFCInstance(st);
      break;
    case Normalizer::Form::NFD:
      n = icu::Normalizer2::getNFDInstance(st);
      break;
    case Normalizer::Form::NFKC:
      n = icu::Normalizer2::getNFKCInstance(st);
      break;
    case Normalizer::Form::NFKD:
      n = icu::Normalizer2::getNFKDInstance(st);
      break;
  }
  if (U_FAILURE(st) || !n) fail("[tokenizer] ICU normalizer unavailable: ", u_errorName(st));
  return *n;
}

// tokenizers normalizes with the unicode-normalization-alignments crate, whose tables are
// Unicode 9.0: characters assigned later are passed through untouched (no reordering, no
// composition). ICU's FilteredNormalizer2 over [:age=9.0:] reproduces exactly that.
const icu::Normalizer2& filtered(Normalizer::Form f) {
  static const icu::UnicodeSet* age9 = [] {
    UErrorCode st = U_ZERO_ERROR;
    auto* s = new icu::UnicodeSet(icu::UnicodeString(u"[:age=9.0:]"), st);
    if (U_FAILURE(st)) fail("[tokenizer] ICU cannot build [:age=9.0:]: ", u_errorName(st));
    s->freeze();
    return s;
  }();
  static const icu::FilteredNormalizer2 nfc(instance(Normalizer::Form::NFC), *age9),
      nfd(instance(Normalizer::Form::NFD), *age9), nfkc(instance(Normalizer::Form::NFKC), *age9),
      nfkd(instance(Normalizer::Form::NFKD), *age9);
  switch (f) {
    case Normalizer::Form::NFC:
      return nfc;
    case Normalizer::Form::NFD:
      return nfd;
    case Normalizer::Form::NFKC:
      return nfkc;
    case Normalizer::Form::NFKD:
      return nfkd;
  }
  return nfc;
}
}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& j, const std::string& origin) {
  Normalizer n;
  if (j.is_null()) return n;
  if (j.is_object() && j.contains("type") && j["type"].is_string() && j["type"].get<std::string>() == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array())
      fail("[tokenizer] ", origin, ": normalizer Sequence without a 'normalizers' list");
    for (const auto& e : j["normalizers"]) n.forms_.push_back(parse_form(e, origin));
  } else {
    n.forms_.push_back(parse_form(j, origin));
  }
  return n;
}

std::string Normalizer::apply(const std::string& text) const {
  if (forms_.empty() || text.empty()) return text;
  bool ascii = true;  // ASCII is invariant under every normalization form
  for (unsigned char b : text) ascii &= b < 0x80;
  if (ascii) return text;
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), int32_t(text.size())));
  for (Form f : forms_) {
    const icu::Normalizer2& n = filtered(f);
    UErrorCode st = U_ZERO_ERROR;
    // Fast path: most text is already normalized.
    if (n.isNormalized(u, st) && U_SUCCESS(st)) continue;
    st = U_ZERO_ERROR;
    icu::UnicodeString out = n.normalize(u, st);
    if (U_FAILURE(st)) fail("[tokenizer] normalization failed: ", u_errorName(st));
    u = std::move(out);
  }
  std::string out;
  u.toUTF8String(out);
  return out;
}

}  // namespace zimage::tok
