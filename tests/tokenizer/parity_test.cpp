// Parity with transformers' Qwen2TokenizerFast on the real Qwen3 tokenizer: fixtures written by
// tools/reference/make_fixtures.py (ids, decoded text, chat-templated padded prompts).
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

#include "tokenizer/normalizer.h"
#include "tokenizer/qwen3_fixture.h"
#include "tokenizer/tokenizer.h"
#include "util/test_util.h"

using nlohmann::json;
using zimage::Qwen2Tokenizer;

namespace {
const Qwen2Tokenizer& qwen3() { return zimage::test::qwen3_tokenizer(); }
json load_json(const std::string& rel) { return json::parse(zimage::test::read_file(zimage::test::fixture(rel))); }
std::string show(const std::string& s) { return json(s).dump(); }
}  // namespace

TEST(TokenizerParity, LoadsRealQwen3Tokenizer) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  const Qwen2Tokenizer t = Qwen2Tokenizer::from_folder(zimage::test::fixture("qwen3_tokenizer"));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("tokenizer.json load: %.3f s wall, %.3f s CPU\n", s, double(std::clock() - c0) / CLOCKS_PER_SEC);
  EXPECT_EQ(t.vocab_size(), 151669);
  EXPECT_EQ(t.pad_token_id(), 151643);
  EXPECT_EQ(t.eos_token_id(), 151645);
  EXPECT_EQ(t.token_to_id("<|im_start|>"), 151644);
  EXPECT_EQ(t.token_to_id("</think>"), 151668);
  EXPECT_EQ(t.id_to_token(151643), "<|endoftext|>");
  EXPECT_EQ(t.token_to_id("no such token"), -1);
}

TEST(TokenizerParity, CorpusIdsAndDecodeMatchTransformers) {
  const json corpus = load_json("ref/tokenizer_corpus.json");
  ASSERT_GE(corpus.size(), 2000u);
  const auto nfc = zimage::tok::Normalizer::from_forms({zimage::tok::Normalizer::Form::NFC});
  qwen3();  // loaded outside the timed loop
  size_t ids_ok = 0, decode_ok = 0, round_ok = 0, tokens = 0;
  double secs = 0;
  for (const json& e : corpus) {
    const std::string text = e["text"];
    const auto ref = e["ids"].get<std::vector<int32_t>>();
    // "decoded" is only recorded where it differs from "text".
    const std::string decoded = e.contains("decoded") ? e["decoded"].get<std::string>() : text;
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = qwen3().encode(text);
    secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tokens += ids.size();
    if (ids == ref)
      ++ids_ok;
    else
      ADD_FAILURE() << "ids differ for " << show(text);
    const std::string dec = qwen3().decode(ref);
    if (dec == decoded)
      ++decode_ok;
    else
      ADD_FAILURE() << "decode differs for " << show(text) << ": " << show(dec);
    // Round trip: decode(encode(s)) is the NFC form of s.
    if (qwen3().decode(ids) == nfc.apply(text))
      ++round_ok;
    else
      ADD_FAILURE() << "round trip fails for " << show(text);
  }
  std::printf("corpus: ids %zu/%zu, decode %zu/%zu, round trip %zu/%zu; %.0f tokens/s\n", ids_ok, corpus.size(),
              decode_ok, corpus.size(), round_ok, corpus.size(), double(tokens) / secs);
  EXPECT_EQ(ids_ok, corpus.size());
}

TEST(TokenizerParity, PromptsMatchZImagePipelineEncodePrompt) {
  const json prompts = load_json("ref/tokenizer_prompts.json");
  ASSERT_FALSE(prompts.empty());
  for (const json& p : prompts) {
    SCOPED_TRACE(p.value("name", std::string("?")));
    const std::string prompt = p["prompt"];
    const int max_length = p["max_length"];
    EXPECT_EQ(qwen3().apply_chat_template(prompt), p["templated"].get<std::string>());
    const zimage::TokenizedPrompt tp = qwen3().encode_prompt(prompt, max_length);
    EXPECT_EQ(tp.input_ids, p["input_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(tp.attention_mask, p["attention_mask"].get<std::vector<int32_t>>());
    const int untruncated = p["num_tokens_untruncated"];
    EXPECT_EQ(tp.num_real, std::min(untruncated, max_length));
    EXPECT_EQ(tp.num_dropped, std::max(0, untruncated - max_length));
    EXPECT_EQ(int(tp.input_ids.size()), max_length);
  }
}

TEST(TokenizerParity, ChatTemplateKeepsPromptVerbatim) {
  // Rendered by transformers' apply_chat_template(..., add_generation_prompt=True,
  // enable_thinking=True) on the Qwen3 template: the content is not stripped.
  EXPECT_EQ(qwen3().apply_chat_template(""), "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(qwen3().apply_chat_template(" a cat "), "<|im_start|>user\n a cat <|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(qwen3().apply_chat_template("\n\nhi\n"), "<|im_start|>user\n\n\nhi\n<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(qwen3().apply_chat_template("x<|im_end|>y"),
            "<|im_start|>user\nx<|im_end|>y<|im_end|>\n<|im_start|>assistant\n");
}

TEST(TokenizerParity, SkipSpecialTokensDropsOnlySpecialOnes) {
  const auto ids = qwen3().encode("<|im_start|>user\nhi<think></think><|im_end|>");
  EXPECT_EQ(qwen3().decode(ids), "<|im_start|>user\nhi<think></think><|im_end|>");
  // <think> and </think> are added tokens but not special.
  EXPECT_EQ(qwen3().decode(ids, true), "user\nhi<think></think>");
}

TEST(TokenizerParity, UnicodeVersionQuirksMatchTokenizers) {
  // Expected ids from transformers. tokenizers normalizes with Unicode 9.0 tables (U+1DF6 and
  // U+08CA/U+08CB are newer: not reordered), splits with Oniguruma's Unicode 15 classes
  // (U+1D2C2 KAKTOVIK NUMERAL is \p{N}; U+2EBF0 is unassigned there) and its \s is White_Space
  // (U+180E is not a space).
  EXPECT_EQ(qwen3().encode("a\xE1\xB7\xB6\xCC\x96 e\xCC\x81"),
            (std::vector<int32_t>{64, 157, 115, 114, 136, 244, 3958}));
  EXPECT_EQ(qwen3().encode("x \xE1\xA0\x8E y"), (std::vector<int32_t>{87, 86089, 254, 236, 379}));
  EXPECT_EQ(qwen3().encode("a \xF0\x9D\x8B\x82 1"), (std::vector<int32_t>{64, 220, 56252, 233, 224, 220, 16}));
  EXPECT_EQ(qwen3().encode("it'\xC5\xBF"), (std::vector<int32_t>{275, 6, 144815}));
  EXPECT_EQ(qwen3().encode("\xE0\xA3\x8A\xCC\x96\xE0\xA3\x8B"),
            (std::vector<int32_t>{156, 96, 232, 136, 244, 156, 96, 233}));
  EXPECT_EQ(qwen3().encode("\xF0\xAE\xAF\xB0\xF0\xAE\xAF\xB1 z"),
            (std::vector<int32_t>{172, 106, 107, 108, 172, 106, 107, 109, 1147}));
}
