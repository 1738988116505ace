// Qwen2Tokenizer::from_gguf: the tokenizer a llama.cpp GGUF carries in its metadata, as
// convert_hf_to_gguf.py writes it for Qwen2/Qwen3 (tokenizer.ggml.model "gpt2", .pre "qwen2",
// tokens, token_type, merges, eos/padding ids), rebuilt as the tokenizer.json of the tokenizer/
// folder it was converted from: NORMAL tokens are the BPE vocab, CONTROL and USER_DEFINED tokens
// the added tokens (CONTROL ones special), UNUSED ones (the "[PAD<i>]" fillers up to the
// embedding's rows) are left out; NFC and the Qwen2 Split regex + ByteLevel, as Qwen2's
// tokenizer.json declares. Every list is checked against the others before it is used.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/gguf.h"
#include "tokenizer/tokenizer_impl.h"

namespace zimage {

namespace {
using nlohmann::json;

// The Qwen2 pre-tokenizer (tokenizer.ggml.pre "qwen2"), as in Qwen2/Qwen3's tokenizer.json.
const char* const kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// llama.cpp's llama_token_type / gguf.TokenType.
enum TokenType : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
}  // namespace

Qwen2Tokenizer Qwen2Tokenizer::from_gguf(const std::string& path) {
  return from_gguf(with_component("tokenizer", [&] { return gguf::File(path); }));
}

Qwen2Tokenizer Qwen2Tokenizer::from_gguf(const gguf::File& f) {
  const std::string& path = f.path();
  const auto& kv = f.metadata();
  auto bad = [&](const auto&... a) { fail("[tokenizer] ", path, ": ", a...); };
  auto string_of = [&](const char* key) -> std::string {
    auto it = kv.find(key);
    if (it == kv.end())
      bad("no '", key, "' in the GGUF metadata (a GGUF text encoder without a tokenizer: give --tokenizer DIR)");
    if (it->second.type != gguf::ValueType::STRING) bad("'", key, "' is not a string");
    return it->second.s;
  };
  auto strings_of = [&](const char* key) -> const std::vector<std::string>& {
    auto it = kv.find(key);
    if (it == kv.end()) bad("no '", key, "' in the GGUF metadata");
    if (it->second.type != gguf::ValueType::ARRAY || it->second.elem != gguf::ValueType::STRING)
      bad("'", key, "' is not an array of strings");
    return it->second.strings;
  };
  auto id_of = [&](const char* key, size_t n) -> int64_t {  // -1 when absent
    auto it = kv.find(key);
    if (it == kv.end()) return -1;
    const gguf::Value& v = it->second;
    int64_t id = -1;
    switch (v.type) {
      case gguf::ValueType::U8:
      case gguf::ValueType::U16:
      case gguf::ValueType::U32:
      case gguf::ValueType::U64:
        id = v.u > uint64_t(INT32_MAX) ? INT64_MAX : int64_t(v.u);
        break;
      case gguf::ValueType::I8:
      case gguf::ValueType::I16:
      case gguf::ValueType::I32:
      case gguf::ValueType::I64:
        id = v.i;
        break;
      default:
        bad("'", key, "' is not an integer");
    }
    if (id < 0 || uint64_t(id) >= n) bad("'", key, "' = ", id, " is not a token id (", n, " tokens)");
    return id;
  };

  const std::string model = string_of("tokenizer.ggml.model");
  if (model != "gpt2")
    bad("tokenizer.ggml.model is '", model, "', expected 'gpt2' (the byte-level BPE of Qwen2/Qwen3)");
  const std::string pre = string_of("tokenizer.ggml.pre");
  if (pre != "qwen2") bad("tokenizer.ggml.pre is '", pre, "', expected 'qwen2' (the Qwen2/Qwen3 pre-tokenizer)");
  const std::vector<std::string>& tokens = strings_of("tokenizer.ggml.tokens");
  const std::vector<std::string>& merges = strings_of("tokenizer.ggml.merges");
  std::vector<int64_t> types;
  if (kv.count("tokenizer.ggml.token_type")) {
    types = with_component("tokenizer", [&] { return f.int_array("tokenizer.ggml.token_type"); });
    if (types.size() != tokens.size())
      bad("tokenizer.ggml.token_type has ", types.size(), " entries but tokenizer.ggml.tokens has ", tokens.size());
  } else {
    types.assign(tokens.size(), kNormal);
  }
  if (tokens.empty()) bad("tokenizer.ggml.tokens is empty");
  if (tokens.size() > size_t(INT32_MAX))
    bad("tokenizer.ggml.tokens has ", tokens.size(), " entries (more than 2^31 - 1)");

  json vocab = json::object(), added = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int64_t t = types[i];
    if (t == kNormal) {
      if (vocab.contains(tokens[i])) bad("token '", tokens[i], "' (id ", i, ") appears twice in tokenizer.ggml.tokens");
      vocab[tokens[i]] = i;
    } else if (t == kControl || t == kUserDefined) {
      // convert_hf_to_gguf.py writes added tokens pre-normalized (Qwen's are normalized: false).
      added.push_back({{"id", i},
                       {"content", tokens[i]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", t == kControl}});
    } else if (t != kUnused) {
      bad("token ", i, " ('", tokens[i], "') has token_type ", t,
          " (a byte-level BPE has NORMAL, CONTROL, USER_DEFINED or UNUSED tokens)");
    }
  }
  json m = {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", ""},
            {"end_of_word_suffix", ""},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", false},
            {"vocab", std::move(vocab)},
            {"merges", merges}};
  const json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  const json root = {
      {"version", "1.0"},
      {"added_tokens", std::move(added)},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"}, {"pattern", {{"Regex", kQwen2Regex}}}, {"behavior", "Isolated"}, {"invert", false}},
              byte_level})}}},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model", std::move(m)}};
  // Special tokens: the GGUF's ids; Qwen2Tokenizer's default pad token when it names none.
  auto usable = [&](int64_t id) { return id >= 0 && types[size_t(id)] != kUnused; };
  const int64_t eos = id_of("tokenizer.ggml.eos_token_id", tokens.size());
  const int64_t pad = id_of("tokenizer.ggml.padding_token_id", tokens.size());
  json cfg = {{"tokenizer_class", "Qwen2Tokenizer"}};
  cfg["eos_token"] = usable(eos) ? json(tokens[size_t(eos)]) : json(nullptr);
  if (usable(pad)) cfg["pad_token"] = tokens[size_t(pad)];
  Qwen2Tokenizer t = from_json_text(root.dump(), cfg.dump(), path + " (GGUF tokenizer)");
  // The prompt format is Z-Image's (its tokenizer/ folder's Qwen3 chat template), whatever chat
  // template the GGUF declares for the language model.
  auto impl = std::make_shared<Impl>(std::move(const_cast<Impl&>(*t.impl_)));
  impl->chat_template = tok::ChatTemplate::qwen3();
  t.impl_ = std::move(impl);
  return t;
}

}  // namespace zimage
