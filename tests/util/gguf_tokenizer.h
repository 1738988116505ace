// The fixture Qwen3 tokenizer as GGUF metadata (tokenizer.ggml.*), for GGUF text encoder tests.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "util/gguf_writer.h"
#include "util/test_util.h"

namespace zimage::test {

// The fixture Qwen3 tokenizer as convert_hf_to_gguf.py writes it (get_vocab_base + SpecialVocab):
// `n_tokens` tokens ("[PAD<i>]" UNUSED fillers past the tokenizer's ids), NORMAL vocab tokens,
// added tokens CONTROL when special or looking special ("<|...|>"), else USER_DEFINED.
inline std::vector<GgufKv> qwen3_tokenizer_kvs(int64_t n_tokens = 151936) {
  const nlohmann::json j = nlohmann::json::parse(read_file(fixture("qwen3_tokenizer/tokenizer.json")));
  std::vector<std::string> tokens(static_cast<size_t>(n_tokens));
  std::vector<int32_t> types(static_cast<size_t>(n_tokens), 5);
  for (int64_t i = 0; i < n_tokens; ++i) tokens[size_t(i)] = std::string("[PAD") + std::to_string(i) + "]";
  for (auto& [tok, id] : j["model"]["vocab"].items()) {
    tokens[id.get<size_t>()] = tok;
    types[id.get<size_t>()] = 1;
  }
  for (const auto& a : j["added_tokens"]) {
    const std::string c = a["content"];
    const size_t id = a["id"].get<size_t>();
    tokens[id] = c;
    const bool looks = c.size() > 4 && c.rfind("<|", 0) == 0 && c.compare(c.size() - 2, 2, "|>") == 0;
    types[id] = a["special"].get<bool>() || looks ? 3 : 4;
  }
  std::vector<std::string> merges;
  for (const auto& m : j["model"]["merges"])
    merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  namespace kv = gguf_kv;
  return {kv::str("tokenizer.ggml.model", "gpt2"),
          kv::str("tokenizer.ggml.pre", "qwen2"),
          kv::strs("tokenizer.ggml.tokens", tokens),
          kv::i32s("tokenizer.ggml.token_type", types),
          kv::strs("tokenizer.ggml.merges", merges),
          kv::u32("tokenizer.ggml.eos_token_id", 151645),
          kv::u32("tokenizer.ggml.padding_token_id", 151643),
          kv::u32("tokenizer.ggml.bos_token_id", 151643),
          kv::boolean("tokenizer.ggml.add_bos_token", false)};
}

}  // namespace zimage::test
