// Qwen2TokenizerFast (transformers) / tokenizers' Tokenizer for the Qwen3 tokenizer.json:
// added tokens split out first, NFC, the Split regex (PCRE2, Unicode classes), ByteLevel, BPE;
// plus ZImagePipeline's prompt encoding (chat template, right truncation, right padding).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace zimage {
namespace gguf {
class File;
}

struct TokenizedPrompt {
  std::vector<int32_t> input_ids;       // [max_length], padded with the pad token
  std::vector<int32_t> attention_mask;  // [max_length], 1 for real tokens, 0 for padding
  int num_real = 0;                     // tokens kept (== number of 1s in attention_mask)
  int num_dropped = 0;                  // tokens cut by truncation (callers warn)
};

class Qwen2Tokenizer {
 public:
  // Reads dir/tokenizer.json and dir/tokenizer_config.json (and dir/chat_template.jinja when
  // the config has no chat_template). Anything unsupported or inconsistent is a zimage::Error.
  static Qwen2Tokenizer from_folder(const std::string& dir);
  // Same from the two JSON texts; `origin` names them in errors.
  static Qwen2Tokenizer from_json_text(const std::string& tokenizer_json, const std::string& tokenizer_config_json,
                                       const std::string& origin, const std::string& chat_template_jinja = "");

  // The tokenizer in a llama.cpp GGUF's metadata (a Qwen3 text encoder converted by
  // convert_hf_to_gguf.py: tokenizer.ggml.model "gpt2", .pre "qwen2", tokens, token_type, merges,
  // eos/padding ids), tokenizing as the tokenizer/ folder it came from; the prompt format is
  // Z-Image's Qwen3 chat template. Anything else or inconsistent is a zimage::Error naming the file.
  static Qwen2Tokenizer from_gguf(const std::string& path);
  static Qwen2Tokenizer from_gguf(const gguf::File& f);

  // Token ids of `text` (UTF-8), no special tokens added (Qwen adds none).
  std::vector<int32_t> encode(std::string_view text) const;
  // Text of `ids` (ByteLevel decoder; added tokens as their content). Unknown ids are an Error.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // The prompt as ZImagePipeline renders it with the chat template.
  std::string apply_chat_template(std::string_view prompt) const;
  // Chat template + encode + right truncation and right padding to max_sequence_length.
  TokenizedPrompt encode_prompt(std::string_view prompt, int max_sequence_length) const;

  int32_t token_to_id(std::string_view token) const;  // -1 when unknown (added tokens included)
  std::string id_to_token(int32_t id) const;          // raw vocab/added text; Error when unknown
  int32_t vocab_size() const;                         // largest id + 1
  int32_t pad_token_id() const;                       // -1 when there is no pad token
  int32_t eos_token_id() const;                       // -1 when there is no eos token

  struct Impl;

 private:
  Qwen2Tokenizer() = default;  // only the factories make one
  std::shared_ptr<const Impl> impl_;
};

}  // namespace zimage
