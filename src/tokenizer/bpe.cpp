#include "tokenizer/bpe.h"

#include <algorithm>
#include <queue>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace zimage::tok {

BpeModel::BpeModel(Vocab vocab, const std::vector<Merge>& merges, const std::string& origin)
    : vocab_(std::move(vocab)) {
  int32_t max_id = -1;
  for (const auto& [tok, id] : vocab_) {
    if (id < 0) fail("[tokenizer] ", origin, ": model.vocab token '", tok, "' has negative id ", id);
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(size_t(max_id + 1), nullptr);
  for (const auto& [tok, id] : vocab_) {
    if (const std::string* other = id_to_token_[size_t(id)])
      fail("[tokenizer] ", origin, ": model.vocab id ", id, " is used by both '", std::min(*other, tok), "' and '",
           std::max(*other, tok), "'");
    id_to_token_[size_t(id)] = &tok;
    size_t k = 0;
    const char32_t ch = tok.empty() ? 0 : utf8_next(tok, k);
    if (!tok.empty() && k == tok.size()) char_ids_.emplace(ch, id);
  }
  merges_.reserve(merges.size() * 2);
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    const int32_t a = token_to_id(m.left), b = token_to_id(m.right);
    if (a < 0 || b < 0)
      fail("[tokenizer] ", origin, ": merge ", rank, " ('", m.left, "' '", m.right, "') names unknown token '",
           a < 0 ? m.left : m.right, "'");
    joined.assign(m.left).append(m.right);
    const int32_t c = token_to_id(joined);
    if (c < 0)
      fail("[tokenizer] ", origin, ": merge ", rank, " ('", m.left, "' '", m.right, "') makes '", m.left + m.right,
           "' which is not in model.vocab");
    // A later duplicate of a pair replaces the earlier one, as tokenizers' HashMap collect does.
    merges_[pair_key(a, b)] = MergeResult{uint32_t(rank), c};
  }
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= id_to_token_.size()) return nullptr;
  return id_to_token_[size_t(id)];
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  const bool cacheable = word.size() <= kCacheMaxWordBytes;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();  // bounded: start over rather than grow
    cache_.emplace(std::move(key), std::vector<int32_t>(out.begin() + std::ptrdiff_t(start), out.end()));
  }
}

// tokenizers' Word::merge_all: a heap of candidate merges (lowest rank, then leftmost position),
// symbols in a doubly linked list; stale heap entries are skipped when the pair at their
// position no longer produces the same token.
void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // -1 at the ends
    bool alive;
  };
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator<(const Candidate& o) const {  // priority_queue pops the "largest": invert
      if (rank != o.rank) return rank > o.rank;
      return pos > o.pos;
    }
  };

  std::vector<Symbol> sym;
  sym.reserve(word.size());
  size_t i = 0;
  while (i < word.size()) {
    auto it = char_ids_.find(utf8_next(word, i));
    // No unk token and no byte fallback: a character missing from the vocab is dropped.
    if (it == char_ids_.end()) continue;
    const int32_t n = int32_t(sym.size());
    sym.push_back(Symbol{it->second, n - 1, -1, true});
    if (n > 0) sym[size_t(n - 1)].next = n;
  }

  auto lookup = [&](int32_t a, int32_t b) -> const MergeResult* {
    auto it = merges_.find(pair_key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };

  std::vector<Candidate> init;
  init.reserve(sym.size());
  for (size_t k = 0; k + 1 < sym.size(); ++k)
    if (const MergeResult* m = lookup(sym[k].id, sym[k + 1].id)) init.push_back({m->rank, int32_t(k), m->new_id});
  std::priority_queue<Candidate> queue(std::less<Candidate>(), std::move(init));

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& cur = sym[size_t(top.pos)];
    if (!cur.alive || cur.next < 0) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = sym[size_t(next_pos)];
    const MergeResult* m = lookup(cur.id, right.id);
    if (!m || m->new_id != top.new_id) continue;  // stale entry
    cur.id = top.new_id;
    cur.next = right.next;
    sym[size_t(next_pos)].alive = false;
    if (right.next >= 0) sym[size_t(right.next)].prev = top.pos;
    if (cur.prev >= 0)
      if (const MergeResult* p = lookup(sym[size_t(cur.prev)].id, cur.id)) queue.push({p->rank, cur.prev, p->new_id});
    if (cur.next >= 0)
      if (const MergeResult* n = lookup(cur.id, sym[size_t(cur.next)].id)) queue.push({n->rank, top.pos, n->new_id});
  }
  for (const Symbol& s : sym)
    if (s.alive) out.push_back(s.id);
}

}  // namespace zimage::tok
