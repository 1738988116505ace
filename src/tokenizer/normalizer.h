// The normalizer declared in tokenizer.json. Supported: null, NFC, NFD, NFKC, NFKD (ICU's
// Normalizer2) and a Sequence of those.
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace zimage::tok {

class Normalizer {
 public:
  enum class Form { NFC, NFD, NFKC, NFKD };
  // Parses tokenizer.json's "normalizer" value; errors name `origin` and the unsupported type.
  static Normalizer from_json(const nlohmann::json& j, const std::string& origin);
  static Normalizer from_forms(std::vector<Form> forms) {
    Normalizer n;
    n.forms_ = std::move(forms);
    return n;
  }

  bool empty() const { return forms_.empty(); }
  // Normalizes valid UTF-8 text.
  std::string apply(const std::string& text) const;

 private:
  std::vector<Form> forms_;
};

}  // namespace zimage::tok
