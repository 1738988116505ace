// Parity with transformers' Qwen2TokenizerFast on the real Qwen3 tokenizer: fixtures written by
// tools/reference/make_fixtures.py (ids, decoded text, chat-templated padded prompts).
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "tokenizer/normalizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/qwen3_fixture.h"
#include "util/test_util.h"

using zimage::Qwen2Tokenizer;
using nlohmann::json;

namespace {
const Qwen2Tokenizer& qwen3() { return zimage::test::qwen3_tokenizer(); }
json load_json(const std::string& rel) { return json::parse(zimage::test::read_file(zimage::test::fixture(rel))); }
std::string show(const std::string& s) { return json(s).dump(); }
}  // namespace

TEST(TokenizerParity, LoadsRealQwen3Tokenizer) {
  const auto t0 = std::chrono::steady_clock::now();
  const Qwen2Tokenizer t = Qwen2Tokenizer::from_folder(zimage::test::fixture("qwen3_tokenizer"));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("tokenizer.json load: %.3f s\n", s);
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
    const std::string decoded = e["decoded"];
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = qwen3().encode(text);
    secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tokens += ids.size();
    if (ids == ref) ++ids_ok; else ADD_FAILURE() << "ids differ for " << show(text);
    const std::string dec = qwen3().decode(ref);
    if (dec == decoded) ++decode_ok; else ADD_FAILURE() << "decode differs for " << show(text) << ": " << show(dec);
    // Round trip: decode(encode(s)) is the NFC form of s.
    if (qwen3().decode(ids) == nfc.apply(text)) ++round_ok; else ADD_FAILURE() << "round trip fails for " << show(text);
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
