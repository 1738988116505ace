// The real Qwen3 tokenizer from tests/fixtures/qwen3_tokenizer, loaded once per test binary.
#pragma once
#include "tokenizer/tokenizer.h"
#include "util/test_util.h"

namespace zimage::test {

inline const Qwen2Tokenizer& qwen3_tokenizer() {
  static const Qwen2Tokenizer t = Qwen2Tokenizer::from_folder(fixture("qwen3_tokenizer"));
  return t;
}

}  // namespace zimage::test
