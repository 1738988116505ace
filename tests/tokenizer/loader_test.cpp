// tokenizer.json / tokenizer_config.json handling on small hand-written files: added token
// flags (expected ids from the `tokenizers` library on the same JSON) and clear errors for
// broken or unsupported files.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "util/test_util.h"

using nlohmann::json;
using zimage::Qwen2Tokenizer;

namespace {
// A tiny byte-level BPE with added tokens exercising single_word, lstrip/rstrip and normalized.
const char* kMini = R"({"version":"1.0","truncation":null,"padding":null,
 "added_tokens":[
  {"id":10,"content":"<m>","single_word":true,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
  {"id":11,"content":"[L]","single_word":false,"lstrip":true,"rstrip":true,"normalized":false,"special":false},
  {"id":12,"content":"é","single_word":false,"lstrip":false,"rstrip":false,"normalized":true,"special":false}],
 "normalizer":{"type":"NFC"},
 "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\p{L}+|\\s+|[^\\s\\p{L}]+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]},
 "post_processor":null,
 "decoder":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false},
 "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"","fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
   "vocab":{"a":0,"b":1,"c":2,"Ġ":3,"ab":4,"abc":5,"Ċ":6,"<":7,">":8,"m":9},
   "merges":[["a","b"],["ab","c"]]}})";
const char* kConfig = R"({"tokenizer_class":"Qwen2Tokenizer","pad_token":"<m>","eos_token":{"content":"[L]"}})";

Qwen2Tokenizer mini(const json& tj, const std::string& config = kConfig) {
  return Qwen2Tokenizer::from_json_text(tj.dump(), config, "mini");
}

std::string load_error(const json& tj, const std::string& config = kConfig) {
  try {
    mini(tj, config);
  } catch (const zimage::Error& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST(TokenizerLoader, AddedTokenFlagsMatchTokenizersLibrary) {
  const Qwen2Tokenizer t = mini(json::parse(kMini));
  // Expected ids and texts: tokenizers.Tokenizer.from_str(kMini).encode(s, add_special_tokens=False).
  EXPECT_EQ(t.encode("<m> ab<m>c [L]  ab  [L]\n e\xCC\x81 abc"),
            (std::vector<int32_t>{10, 3, 4, 7, 9, 8, 2, 11, 4, 11, 12, 3, 5}));
  EXPECT_EQ(t.encode("a<m>b <m>"), (std::vector<int32_t>{0, 7, 9, 8, 1, 3, 10}));
  EXPECT_EQ(t.encode("ab\t[L]\t\xE2\x80\x80"
                     "c"),
            (std::vector<int32_t>{4, 11, 2}));
  EXPECT_EQ(t.encode("xyz abcab"), (std::vector<int32_t>{3, 5, 4}));  // unknown characters are dropped
  EXPECT_EQ(t.encode("e\xCC\x81"
                     "e\xCC\x81\xC3\xA9"),
            (std::vector<int32_t>{12, 12, 12}));
  EXPECT_EQ(t.encode("[L][L]<m><m>"), (std::vector<int32_t>{11, 11, 10, 10}));
  EXPECT_TRUE(t.encode("").empty());
  EXPECT_EQ(t.decode({10, 3, 4, 7, 9, 8, 2, 11, 4, 11, 12, 3, 5}), "<m> ab<m>c[L]ab[L]\xEF\xBF\xBD abc");
  EXPECT_EQ(t.decode({0, 7, 9, 8, 1, 3, 10}, true), "a<m>b ");
  EXPECT_EQ(t.decode({11, 11, 10, 10}, true), "[L][L]");
  EXPECT_EQ(t.pad_token_id(), 10);
  EXPECT_EQ(t.eos_token_id(), 11);
  EXPECT_EQ(t.vocab_size(), 13);
}

TEST(TokenizerLoader, MergesAsStringsEqualMergesAsPairs) {
  json tj = json::parse(kMini);
  tj["model"]["merges"] = json::array({"a b", "ab c"});
  EXPECT_EQ(mini(tj).encode("abc ab"), (std::vector<int32_t>{5, 3, 4}));
}

TEST(TokenizerLoader, BrokenTokenizerJsonGivesClearErrors) {
  const json good = json::parse(kMini);
  auto with = [&](auto&& edit) {
    json j = good;
    edit(j);
    return load_error(j);
  };
  EXPECT_EQ(load_error(good), "(no error)");
  EXPECT_EQ(with([](json& j) { j.erase("model"); }), "[tokenizer] mini/tokenizer.json: missing 'model'");
  EXPECT_EQ(with([](json& j) { j["model"].erase("vocab"); }), "[tokenizer] mini/tokenizer.json: missing model.vocab");
  EXPECT_EQ(with([](json& j) { j["model"].erase("merges"); }), "[tokenizer] mini/tokenizer.json: missing model.merges");
  EXPECT_EQ(with([](json& j) { j["model"]["type"] = "WordPiece"; }),
            "[tokenizer] mini/tokenizer.json: unsupported model type 'WordPiece' (supported: BPE)");
  EXPECT_EQ(with([](json& j) {
              j["model"]["merges"].push_back(json::array({"a", "zz"}));
            }),
            "[tokenizer] mini/tokenizer.json: merge 2 ('a' 'zz') names unknown token 'zz'");
  EXPECT_EQ(with([](json& j) {
              j["model"]["merges"].push_back(json::array({"c", "a"}));
            }),
            "[tokenizer] mini/tokenizer.json: merge 2 ('c' 'a') makes 'ca' which is not in model.vocab");
  EXPECT_EQ(with([](json& j) { j["model"]["merges"] = json::array({"a b c"}); }),
            "[tokenizer] mini/tokenizer.json: merge 0 'a b c' is not two tokens separated by one space");
  EXPECT_EQ(with([](json& j) { j["added_tokens"][0]["id"] = 13; }),
            "[tokenizer] mini/tokenizer.json: added token '<m>' has id 13 outside [0, 13) (vocab size + added tokens)");
  EXPECT_EQ(with([](json& j) { j["added_tokens"][0]["id"] = -1; }),
            "[tokenizer] mini/tokenizer.json: added token '<m>' has id -1 outside [0, 13) (vocab size + added tokens)");
  EXPECT_EQ(with([](json& j) { j["added_tokens"][1]["id"] = 10; }),
            "[tokenizer] mini/tokenizer.json: added tokens '<m>' and '[L]' share id 10");
  EXPECT_EQ(with([](json& j) { j["model"]["vocab"]["zz"] = 4; }),
            "[tokenizer] mini/tokenizer.json: model.vocab id 4 is used by both 'ab' and 'zz'");
  EXPECT_EQ(with([](json& j) { j["model"]["vocab"]["a"] = -3; }),
            "[tokenizer] mini/tokenizer.json: model.vocab['a'] has id -3 out of range");
  EXPECT_EQ(with([](json& j) { j["model"]["unk_token"] = "a"; }),
            "[tokenizer] mini/tokenizer.json: unsupported model.unk_token \"a\"");
  EXPECT_EQ(with([](json& j) {
              j["normalizer"] = {{"type", "Lowercase"}};
            }),
            "[tokenizer] mini/tokenizer.json: unsupported normalizer {\"type\":\"Lowercase\"} (supported: NFC, NFD, "
            "NFKC, NFKD, Sequence)");
  EXPECT_EQ(
      with([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithNext"; }),
      "[tokenizer] mini/tokenizer.json: unsupported Split behavior 'MergedWithNext' (supported: Isolated, Removed)");
  EXPECT_EQ(with([](json& j) {
              j["pre_tokenizer"] = {{"type", "Whitespace"}};
            }),
            "[tokenizer] mini/tokenizer.json: unsupported pre_tokenizer type 'Whitespace' (supported: Sequence, Split, "
            "ByteLevel)");
  EXPECT_EQ(
      with([](json& j) {
        j["decoder"] = {{"type", "WordPiece"}};
      }),
      "[tokenizer] mini/tokenizer.json: unsupported decoder {\"type\":\"WordPiece\"} (supported: ByteLevel, null)");
  // Wrongly typed values are errors naming the key (they were nlohmann type errors: "internal error").
  EXPECT_EQ(with([](json& j) {
              j["decoder"] = {{"type", 5}};
            }),
            "[tokenizer] mini/tokenizer.json decoder: 'type' must be a string, got 5");
  EXPECT_EQ(with([](json& j) {
              j["post_processor"] = {{"type", true}};
            }),
            "[tokenizer] mini/tokenizer.json post_processor: 'type' must be a string, got true");
  EXPECT_EQ(with([](json& j) { j["normalizer"] = {{"type", 5}}; }).rfind("[tokenizer] mini/tokenizer.json", 0), 0u);
  EXPECT_EQ(with([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = 5; }),
            "[tokenizer] mini/tokenizer.json: Split pre_tokenizer 'behavior' must be a string, got 5");
  EXPECT_EQ(with([](json& j) {
              j["post_processor"] = {{"type", "TemplateProcessing"}};
            }),
            "[tokenizer] mini/tokenizer.json: unsupported post_processor {\"type\":\"TemplateProcessing\"} (supported: "
            "ByteLevel, null)");
  EXPECT_NE(with([](json& j) {
              j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(a";
            }).find("[tokenizer] mini/tokenizer.json: cannot compile regex '(a'"),
            std::string::npos);
  EXPECT_NE(with([](json& j) {
              j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
            }).find("escape \\w is not supported"),
            std::string::npos);
  EXPECT_NE(load_error(good, "{\"pad_token\": ").find("[tokenizer] mini/tokenizer_config.json: not valid JSON"),
            std::string::npos);
  EXPECT_EQ(load_error(good, R"({"pad_token":"<nope>"})"),
            "[tokenizer] mini/tokenizer_config.json: pad_token '<nope>' is not a token of tokenizer.json");
  EXPECT_EQ(load_error(good, R"({"tokenizer_class":"LlamaTokenizer"})"),
            "[tokenizer] mini/tokenizer_config.json: unsupported tokenizer_class 'LlamaTokenizer' (supported: "
            "Qwen2Tokenizer)");
  EXPECT_NE(load_error(good, R"({"pad_token":"<m>","eos_token":"<m>","chat_template":"{{ messages }}"})")
                .find("unsupported chat_template"),
            std::string::npos);
}

TEST(TokenizerLoader, MissingFolderOrFilesAreErrors) {
  const std::string dir = zimage::test::temp_dir("tok_loader");
  try {
    Qwen2Tokenizer::from_folder(dir);
    FAIL() << "expected an error";
  } catch (const zimage::Error& e) {
    EXPECT_EQ(std::string(e.what()), "[tokenizer] cannot read " + dir + "/tokenizer.json");
  }
  zimage::test::write_file(dir + "/tokenizer.json", "{\"model\": [1, 2");
  zimage::test::write_file(dir + "/tokenizer_config.json", kConfig);
  try {
    Qwen2Tokenizer::from_folder(dir);
    FAIL() << "expected an error";
  } catch (const zimage::Error& e) {
    EXPECT_NE(std::string(e.what()).find("[tokenizer] " + dir + "/tokenizer.json: not valid JSON"), std::string::npos)
        << e.what();
  }
  zimage::test::write_file(dir + "/tokenizer.json", kMini);
  const Qwen2Tokenizer t = Qwen2Tokenizer::from_folder(dir);
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{5}));
  // No chat template anywhere: plain encoding works, prompt encoding says why it cannot.
  EXPECT_THROW(t.encode_prompt("abc", 8), zimage::Error);
  std::filesystem::remove_all(dir);
  EXPECT_THROW(Qwen2Tokenizer::from_folder(dir), zimage::Error);
}

// Spotted while writing fuzz/tokenizer_json_fuzz (the crash inputs are in its corpus): a field of
// the wrong JSON type where the loader expected a string threw nlohmann::json's type_error (no
// "[tokenizer]" error, and not a zimage::Error).
TEST(TokenizerLoader, NonStringTypeFieldsAreClearErrors) {
  const json good = json::parse(kMini);
  auto with = [&](auto&& edit) {
    json j = good;
    edit(j);
    return load_error(j);
  };
  EXPECT_EQ(with([](json& j) {
              j["decoder"] = {{"type", 1}};
            }),
            "[tokenizer] mini/tokenizer.json decoder: 'type' must be a string, got 1");
  EXPECT_EQ(with([](json& j) {
              j["post_processor"] = {{"type", nullptr}};
            }),
            "[tokenizer] mini/tokenizer.json: unsupported post_processor {\"type\":null} (supported: ByteLevel, null)");
  EXPECT_EQ(with([](json& j) {
              j["normalizer"] = {{"type", json::array()}};
            }),
            "[tokenizer] mini/tokenizer.json: unsupported normalizer {\"type\":[]} (supported: NFC, NFD, NFKC, NFKD, "
            "Sequence)");
  EXPECT_EQ(with([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = 3; }),
            "[tokenizer] mini/tokenizer.json: Split pre_tokenizer 'behavior' must be a string, got 3");
  EXPECT_EQ(load_error(good, R"({"pad_token":"<m>","eos_token":"<m>","chat_template":[{"name":1,"template":"x"}]})"),
            "[tokenizer] mini/tokenizer_config.json chat_template: 'name' must be a string, got 1");
}
