// The tokenizer of a GGUF text encoder (tokenizer.ggml.* metadata as convert_hf_to_gguf.py writes
// it for Qwen3) tokenizes exactly as the tokenizer/ folder it came from: the transformers ids of the
// tokenizer corpus and of the chat-templated prompts; bad metadata is a clear error.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tokenizer/qwen3_fixture.h"
#include "tokenizer/tokenizer.h"
#include "util/gguf_tokenizer.h"
#include "util/test_util.h"

namespace zimage {
namespace {
using nlohmann::json;

std::string write_gguf(const std::string& name, const std::vector<test::GgufKv>& kvs) {
  struct Dir {  // removed at the test binary's exit
    std::string path = test::temp_dir("ggufTok");
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  const std::string path = dir.path + "/" + name;
  test::write_file(path, test::gguf_bytes({}, kvs));
  return path;
}

const Qwen2Tokenizer& gguf_tokenizer() {
  static const Qwen2Tokenizer t = Qwen2Tokenizer::from_gguf(write_gguf("qwen3.gguf", test::qwen3_tokenizer_kvs()));
  return t;
}

// The fixture's key/values with `key` replaced by `kv` (or removed when kv.key is empty).
std::vector<test::GgufKv> with(const std::string& key, const test::GgufKv& kv) {
  static const std::vector<test::GgufKv> base = test::qwen3_tokenizer_kvs();
  std::vector<test::GgufKv> out;
  for (const test::GgufKv& e : base) {
    if (e.key != key)
      out.push_back(e);
    else if (!kv.key.empty())
      out.push_back(kv);
  }
  return out;
}
}  // namespace

TEST(GgufTokenizer, SpecialTokensAsTheFolders) {
  const Qwen2Tokenizer& g = gguf_tokenizer();
  const Qwen2Tokenizer& f = test::qwen3_tokenizer();
  EXPECT_EQ(g.vocab_size(), f.vocab_size());  // the [PAD] fillers are not tokens
  EXPECT_EQ(g.pad_token_id(), f.pad_token_id());
  EXPECT_EQ(g.eos_token_id(), f.eos_token_id());
  for (const char* t : {"<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>", "hello"})
    EXPECT_EQ(g.token_to_id(t), f.token_to_id(t)) << t;
  EXPECT_EQ(g.token_to_id("[PAD151700]"), -1);
}

TEST(GgufTokenizer, CorpusIdsEqualTheFolderTokenizers) {
  const json corpus = json::parse(test::read_file(test::fixture("ref/tokenizer_corpus.json")));
  ASSERT_GE(corpus.size(), 2000u);
  size_t same = 0;
  for (const json& e : corpus) {
    const std::string text = e["text"];
    const std::vector<int32_t> ids = gguf_tokenizer().encode(text);
    if (ids == e["ids"].get<std::vector<int32_t>>() && ids == test::qwen3_tokenizer().encode(text))
      ++same;
    else
      ADD_FAILURE() << "ids differ for " << json(text).dump();
    EXPECT_EQ(gguf_tokenizer().decode(ids), test::qwen3_tokenizer().decode(ids));
  }
  EXPECT_EQ(same, corpus.size());
}

TEST(GgufTokenizer, PromptsEqualTheFolderTokenizers) {
  const json prompts = json::parse(test::read_file(test::fixture("ref/tokenizer_prompts.json")));
  ASSERT_FALSE(prompts.empty());
  for (const json& p : prompts) {
    SCOPED_TRACE(p.value("name", std::string("?")));
    const TokenizedPrompt tp =
        gguf_tokenizer().encode_prompt(p["prompt"].get<std::string>(), p["max_length"].get<int>());
    EXPECT_EQ(tp.input_ids, p["input_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(tp.attention_mask, p["attention_mask"].get<std::vector<int32_t>>());
  }
}

TEST(GgufTokenizer, BadMetadataIsAClearError) {
  namespace kv = test::gguf_kv;
  auto err = [&](const std::string& name, const std::vector<test::GgufKv>& kvs) {
    const std::string path = write_gguf(name, kvs);
    return std::pair{path, test::error_of([&] { Qwen2Tokenizer::from_gguf(path); })};
  };
  {
    auto [p, e] = err("llama.gguf", with("tokenizer.ggml.model", kv::str("tokenizer.ggml.model", "llama")));
    EXPECT_EQ(e, "[tokenizer] " + p +
                     ": tokenizer.ggml.model is 'llama', expected 'gpt2' (the byte-level BPE of Qwen2/Qwen3)");
  }
  {
    auto [p, e] = err("pre.gguf", with("tokenizer.ggml.pre", kv::str("tokenizer.ggml.pre", "llama-bpe")));
    EXPECT_EQ(e, "[tokenizer] " + p +
                     ": tokenizer.ggml.pre is 'llama-bpe', expected 'qwen2' (the Qwen2/Qwen3 pre-tokenizer)");
  }
  {
    auto [p, e] = err("notok.gguf", with("tokenizer.ggml.model", {}));
    EXPECT_EQ(e, "[tokenizer] " + p +
                     ": no 'tokenizer.ggml.model' in the GGUF metadata (a GGUF text encoder without a "
                     "tokenizer: give --tokenizer DIR)");
  }
  {
    auto [p, e] =
        err("types.gguf", with("tokenizer.ggml.token_type", kv::i32s("tokenizer.ggml.token_type", {1, 1, 1})));
    EXPECT_EQ(e, "[tokenizer] " + p + ": tokenizer.ggml.token_type has 3 entries but tokenizer.ggml.tokens has 151936");
  }
  {
    auto [p, e] = err("eos.gguf", with("tokenizer.ggml.eos_token_id", kv::u32("tokenizer.ggml.eos_token_id", 200000)));
    EXPECT_EQ(e, "[tokenizer] " + p + ": 'tokenizer.ggml.eos_token_id' = 200000 is not a token id (151936 tokens)");
  }
  {  // a merge naming a token that is not in the vocab: the BPE model's own check, naming the file
    auto [p, e] =
        err("merges.gguf", with("tokenizer.ggml.merges", kv::strs("tokenizer.ggml.merges", {"no_such_token x"})));
    EXPECT_NE(e.find("[tokenizer] " + p), std::string::npos) << e;
    EXPECT_NE(e.find("no_such_token"), std::string::npos) << e;
  }
}

}  // namespace zimage
