// The BPE model of tokenizers (models/bpe): a word's characters are looked up in the vocab and
// merged pair by pair, always the pair of lowest merge rank first (leftmost on ties), with a heap
// over a linked list of symbols so a long word costs O(n log n).
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace zimage::tok {

class BpeModel {
 public:
  struct Merge {
    std::string left, right;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  // vocab: token text -> id (ids must be distinct, non-negative); merges in rank order.
  // Errors (with `origin` in the text) on a merge naming an unknown token or whose result is
  // not in the vocab.
  BpeModel(Vocab vocab, const std::vector<Merge>& merges, const std::string& origin);

  // Token ids of one pre-tokenized word (already in the ByteLevel alphabet), appended to out.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  const std::string* id_to_token(int32_t id) const;   // nullptr when absent
  size_t vocab_size() const { return vocab_.size(); }
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }
  size_t num_merges() const { return merges_.size(); }

  static constexpr size_t kCacheCapacity = 10000;  // words kept in the cache
  static constexpr size_t kCacheMaxWordBytes = 256;

 private:
  struct MergeResult {
    uint32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  Vocab vocab_;
  std::vector<const std::string*> id_to_token_;  // by id, into vocab_'s keys; nullptr for holes
  std::unordered_map<uint64_t, MergeResult> merges_;
  std::unordered_map<char32_t, int32_t> char_ids_;  // one-character tokens -> id

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace zimage::tok
