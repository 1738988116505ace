// Qwen2Tokenizer's runtime: encode (tokenizers' Tokenizer::encode without special tokens),
// decode, and ZImagePipeline's prompt encoding.
#include "tokenizer/tokenizer.h"

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace zimage {

std::vector<int32_t> Qwen2Tokenizer::encode(std::string_view text) const {
  const Impl& t = *impl_;
  if (const size_t bad = tok::utf8_invalid_at(text); bad != std::string_view::npos)
    fail("[tokenizer] prompt is not valid UTF-8 at byte ", bad);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  // 1. Added tokens matched on the raw text; 2. the rest normalized, then tokens marked
  // `normalized` matched in it; 3. what remains is pre-tokenized and run through BPE.
  for (const tok::Segment& raw : t.raw_matcher.split(text)) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    const std::string normalized = t.normalizer.apply(std::string(raw.text));
    for (const tok::Segment& seg : t.normalized_matcher.split(normalized)) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
        continue;
      }
      for (const std::string& word : t.pre_tokenizer.apply(seg.text)) t.model->tokenize(word, ids);
    }
  }
  return ids;
}

std::string Qwen2Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const Impl& t = *impl_;
  const tok::ByteLevelAlphabet& alphabet = tok::byte_level_alphabet();
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    const std::string* text = nullptr;
    if (auto it = t.added_by_id.find(id); it != t.added_by_id.end()) {
      const tok::AddedToken& a = t.added[it->second];
      if (skip_special_tokens && a.special) continue;
      text = &a.content;
    } else {
      text = t.model->id_to_token(id);
      if (!text) fail("[tokenizer] decode: token id ", id, " is not in the vocabulary (size ", t.vocab_size, ")");
    }
    if (t.byte_level_decoder) {
      bytes += alphabet.decode_token(*text);
    } else {
      if (!first) bytes += ' ';
      bytes += *text;
    }
    first = false;
  }
  return t.byte_level_decoder ? tok::utf8_lossy(bytes) : bytes;
}

std::string Qwen2Tokenizer::apply_chat_template(std::string_view prompt) const {
  if (const size_t bad = tok::utf8_invalid_at(prompt); bad != std::string_view::npos)
    fail("[tokenizer] prompt is not valid UTF-8 at byte ", bad);
  return impl_->chat_template.render_user_prompt(prompt);
}

TokenizedPrompt Qwen2Tokenizer::encode_prompt(std::string_view prompt, int max_sequence_length) const {
  if (max_sequence_length <= 0) fail("[tokenizer] max_sequence_length must be positive, got ", max_sequence_length);
  if (impl_->pad_id < 0) fail("[tokenizer] cannot pad the prompt: tokenizer_config.json has no pad_token");
  std::vector<int32_t> ids = encode(apply_chat_template(prompt));
  TokenizedPrompt out;
  const size_t max_len = size_t(max_sequence_length);
  // transformers: truncation=True cuts on the right, padding="max_length" pads on the right.
  out.num_dropped = ids.size() > max_len ? int(ids.size() - max_len) : 0;
  if (ids.size() > max_len) ids.resize(max_len);
  out.num_real = int(ids.size());
  out.attention_mask.assign(max_len, 0);
  std::fill(out.attention_mask.begin(), out.attention_mask.begin() + out.num_real, 1);
  ids.resize(max_len, impl_->pad_id);
  out.input_ids = std::move(ids);
  return out;
}

int32_t Qwen2Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_ids.find(std::string(token)); it != impl_->added_ids.end()) return it->second;
  return impl_->model->token_to_id(token);
}

std::string Qwen2Tokenizer::id_to_token(int32_t id) const {
  if (auto it = impl_->added_by_id.find(id); it != impl_->added_by_id.end()) return impl_->added[it->second].content;
  const std::string* s = impl_->model->id_to_token(id);
  if (!s) fail("[tokenizer] token id ", id, " is not in the vocabulary (size ", impl_->vocab_size, ")");
  return *s;
}

int32_t Qwen2Tokenizer::vocab_size() const { return impl_->vocab_size; }
int32_t Qwen2Tokenizer::pad_token_id() const { return impl_->pad_id; }
int32_t Qwen2Tokenizer::eos_token_id() const { return impl_->eos_id; }

}  // namespace zimage
