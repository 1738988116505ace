// Internals of Qwen2Tokenizer shared by the loader (loader.cpp) and the runtime (tokenizer.cpp).
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace zimage {

struct Qwen2Tokenizer::Impl {
  std::unique_ptr<tok::BpeModel> model;
  tok::Normalizer normalizer;
  tok::PreTokenizer pre_tokenizer;
  bool byte_level_decoder = true;  // false: tokenizers' default decoder (tokens joined by ' ')

  std::vector<tok::AddedToken> added;                  // as declared
  std::unordered_map<int32_t, size_t> added_by_id;     // id -> index in `added`
  std::unordered_map<std::string, int32_t> added_ids;  // content -> id
  tok::AddedTokenMatcher raw_matcher;                  // normalized == false tokens
  tok::AddedTokenMatcher normalized_matcher;           // normalized == true tokens

  tok::ChatTemplate chat_template;
  int32_t pad_id = -1, eos_id = -1;
  int32_t vocab_size = 0;
};

}  // namespace zimage
