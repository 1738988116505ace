#include "tokenizer/pretokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/unicode_classes.h"

namespace zimage::tok {

namespace {
// tokenizers' ByteLevel::use_regex pattern (GPT-2).
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

bool get_bool(const nlohmann::json& j, const char* key, bool def, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean())
    fail("[tokenizer] ", origin, ": pre_tokenizer field '", key, "' must be a boolean, got ", j[key].dump());
  return j[key].get<bool>();
}
}  // namespace

void PreTokenizer::add_step(PreTokenizer& p, const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail("[tokenizer] ", origin, ": pre_tokenizer entry without a type: ", j.dump());
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
      fail("[tokenizer] ", origin, ": pre_tokenizer Sequence without a 'pretokenizers' list");
    for (const auto& e : j["pretokenizers"]) add_step(p, e, origin);
    return;
  }
  Step s;
  if (type == "Split") {
    s.kind = Step::Kind::Split;
    const nlohmann::json pat = j.contains("pattern") ? j["pattern"] : nlohmann::json();
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      s.regex = std::make_shared<Regex>(expand_unicode_classes(pat["Regex"].get<std::string>(), origin), origin);
    } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
      // A literal string pattern: escape it as PCRE2 \Q...\E would mishandle an embedded \E.
      std::string lit, esc;
      lit = pat["String"].get<std::string>();
      for (char c : lit) {
        if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) esc += '\\';
        esc += c;
      }
      s.regex = std::make_shared<Regex>(esc, origin);
    } else {
      fail("[tokenizer] ", origin, ": Split pre_tokenizer needs a pattern {\"Regex\": ...} or {\"String\": ...}, got ",
           pat.dump());
    }
    if (j.contains("behavior") && !j["behavior"].is_string())
      fail("[tokenizer] ", origin, ": Split pre_tokenizer 'behavior' must be a string, got ", j["behavior"].dump());
    const std::string behavior = j.value("behavior", std::string("Isolated"));
    if (behavior == "Removed") {
      s.remove_matches = true;
    } else if (behavior != "Isolated") {
      fail("[tokenizer] ", origin, ": unsupported Split behavior '", behavior, "' (supported: Isolated, Removed)");
    }
    s.invert = get_bool(j, "invert", false, origin);
  } else if (type == "ByteLevel") {
    s.kind = Step::Kind::ByteLevel;
    if (get_bool(j, "add_prefix_space", false, origin))
      fail("[tokenizer] ", origin, ": ByteLevel pre_tokenizer with add_prefix_space true is not supported");
    if (get_bool(j, "use_regex", true, origin)) {
      // The GPT-2 split runs before the byte mapping, as its own step.
      Step split;
      split.kind = Step::Kind::Split;
      split.regex = std::make_shared<Regex>(expand_unicode_classes(kGpt2Pattern, origin), origin);
      p.steps_.push_back(split);
    }
  } else {
    fail("[tokenizer] ", origin, ": unsupported pre_tokenizer type '", type,
         "' (supported: Sequence, Split, ByteLevel)");
  }
  p.steps_.push_back(s);
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j, const std::string& origin) {
  PreTokenizer p;
  if (!j.is_null()) add_step(p, j, origin);
  return p;
}

bool PreTokenizer::byte_level() const {
  for (const Step& s : steps_)
    if (s.kind == Step::Kind::ByteLevel) return true;
  return false;
}

std::vector<std::string> PreTokenizer::apply(std::string_view text) const {
  std::vector<std::string> pieces;
  if (!text.empty()) pieces.emplace_back(text);
  const ByteLevelAlphabet& alphabet = byte_level_alphabet();
  for (const Step& s : steps_) {
    std::vector<std::string> next;
    next.reserve(pieces.size());
    for (const std::string& piece : pieces) {
      if (s.kind == Step::Kind::ByteLevel) {
        next.push_back(alphabet.encode(piece));
        continue;
      }
      // Matches and the gaps between them cover the piece; Isolated keeps each as its own
      // piece, Removed drops the matches (the gaps, with invert).
      size_t prev = 0;
      auto emit = [&](size_t b, size_t e, bool is_match) {
        if (e <= b) return;
        if (s.remove_matches && (is_match != s.invert)) return;
        next.emplace_back(piece.substr(b, e - b));
      };
      for (const auto& [b, e] : s.regex->find_all(piece)) {
        emit(prev, b, false);
        emit(b, e, true);
        prev = e;
      }
      emit(prev, piece.size(), false);
    }
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace zimage::tok
