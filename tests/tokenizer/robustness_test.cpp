// Hostile input: invalid UTF-8, NUL bytes, huge prompts and huge single "words" (BPE must stay
// exact and fast: tokenizers has no word length limit).
#include <gtest/gtest.h>

#include <ctime>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/qwen3_fixture.h"
#include "tokenizer/tokenizer.h"
#include "util/test_util.h"

using zimage::Qwen2Tokenizer;

namespace {
const Qwen2Tokenizer& qwen3() { return zimage::test::qwen3_tokenizer(); }

std::string error_of(const std::string& text) {
  try {
    qwen3().encode(text);
  } catch (const zimage::Error& e) {
    return e.what();
  }
  return "";
}

// CPU seconds this thread spends in f(): the work done, independent of other load on the machine.
template <class F>
double thread_cpu_seconds(F&& f) {
  timespec a{}, b{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
  f();
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
  return double(b.tv_sec - a.tv_sec) + 1e-9 * double(b.tv_nsec - a.tv_nsec);
}

// How encode's cost grows from text(n / 4) to text(n): about 4 when linear, 16 when quadratic.
// The minimum of two runs of each, with the word cache warm for both, so the ratio measures the
// algorithm, not noise or first-touch costs. No wall-clock threshold: a busy or sanitized machine
// slows both sizes alike.
template <class MakeText>
double growth_ratio(size_t n, MakeText&& text) {
  const std::string small = text(n / 4), large = text(n);
  qwen3().encode(small);
  qwen3().encode(large);
  double ts = 1e30, tl = 1e30;
  for (int r = 0; r < 2; ++r) {
    ts = std::min(ts, thread_cpu_seconds([&] { qwen3().encode(small); }));
    tl = std::min(tl, thread_cpu_seconds([&] { qwen3().encode(large); }));
  }
  return tl / std::max(ts, 1e-6);
}

// Plain quadratic BPE straight from tokenizer.json: merge the lowest-rank adjacent pair,
// leftmost first, until none applies. Independent of the library's heap implementation.
class NaiveBpe {
 public:
  NaiveBpe() {
    const auto j =
        nlohmann::json::parse(zimage::test::read_file(zimage::test::fixture("qwen3_tokenizer/tokenizer.json")));
    for (const auto& [k, v] : j["model"]["vocab"].items()) vocab_[k] = v.get<int32_t>();
    int rank = 0;
    for (const auto& m : j["model"]["merges"]) ranks_[{m[0].get<std::string>(), m[1].get<std::string>()}] = rank++;
  }
  std::vector<int32_t> encode_word(const std::string& raw) const {
    const auto& a = zimage::tok::byte_level_alphabet();
    std::vector<std::string> parts;
    for (unsigned char b : raw) parts.push_back(a.utf8_of(b));
    for (;;) {
      int best = -1, best_rank = INT32_MAX;
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        auto it = ranks_.find({parts[i], parts[i + 1]});
        if (it != ranks_.end() && it->second < best_rank) best_rank = it->second, best = int(i);
      }
      if (best < 0) break;
      parts[size_t(best)] += parts[size_t(best) + 1];
      parts.erase(parts.begin() + best + 1);
    }
    std::vector<int32_t> ids;
    for (const auto& p : parts) ids.push_back(vocab_.at(p));
    return ids;
  }

 private:
  std::map<std::string, int32_t> vocab_;
  std::map<std::pair<std::string, std::string>, int> ranks_;
};

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}
}  // namespace

TEST(TokenizerRobustness, InvalidUtf8IsAnErrorNamingTheByte) {
  EXPECT_EQ(error_of(std::string("ab\x80", 3)),
            "[tokenizer] prompt is not valid UTF-8 at byte 2");                                    // lone continuation
  EXPECT_EQ(error_of(std::string("\xC3", 1)), "[tokenizer] prompt is not valid UTF-8 at byte 0");  // truncated
  EXPECT_EQ(error_of(std::string("ok\xC0\xAF", 4)), "[tokenizer] prompt is not valid UTF-8 at byte 2");     // overlong
  EXPECT_EQ(error_of(std::string("x\xED\xA0\x80", 4)), "[tokenizer] prompt is not valid UTF-8 at byte 1");  // surrogate
  EXPECT_EQ(error_of(std::string("\xF4\x90\x80\x80", 4)),
            "[tokenizer] prompt is not valid UTF-8 at byte 0");  // > U+10FFFF
  EXPECT_EQ(error_of(std::string("\xFF", 1)), "[tokenizer] prompt is not valid UTF-8 at byte 0");
  EXPECT_EQ(error_of("caf\xC3\xA9 \xE6\x97\xA5\xF0\x9F\x98\x80"), "");  // valid multi-byte text
  EXPECT_THROW(qwen3().encode_prompt(std::string("a\x80", 2), 16), zimage::Error);
}

TEST(TokenizerRobustness, NulBytesAreOrdinaryCharacters) {
  // transformers: tok("\x00a\x00")["input_ids"] == [188, 64, 188]
  EXPECT_EQ(qwen3().encode(std::string("\0a\0", 3)), (std::vector<int32_t>{188, 64, 188}));
  EXPECT_EQ(qwen3().decode({188, 64, 188}), std::string("\0a\0", 3));
}

TEST(TokenizerRobustness, DecodeOfPartialUtf8IsLossyLikeRust) {
  // transformers: decode([157, 108]) == "\ufffd" (a truncated 3-byte sequence is one U+FFFD).
  EXPECT_EQ(qwen3().decode({157, 108}), "\xEF\xBF\xBD");
  EXPECT_EQ(qwen3().decode({2073}), "\xE2\x80\x9C");
  EXPECT_THROW(qwen3().decode({151669}), zimage::Error);
  EXPECT_THROW(qwen3().decode({-1}), zimage::Error);
}

TEST(TokenizerRobustness, TenThousandRepeatedCharactersAreExactAndLinear) {
  // Expected values from transformers on the same strings.
  struct Case {
    std::string unit;
    size_t count;
    int32_t id;
    size_t n_ids;
  } cases[] = {{"a", 10000, 69440, 1250}, {"\xE6\x97\xA5", 10000, 8903, 10000}, {"ab", 5000, 370, 5000}};
  const auto& tok = qwen3();
  for (const Case& c : cases) {
    const std::string text = repeat(c.unit, c.count);
    const auto ids = tok.encode(text);
    EXPECT_EQ(ids, std::vector<int32_t>(c.n_ids, c.id)) << c.unit;
    // One long word: BPE merging must stay near-linear in its length (4x the text, < 10x the work).
    EXPECT_LT(growth_ratio(c.count, [&](size_t n) { return repeat(c.unit, n); }), 10.0) << c.unit;
    EXPECT_EQ(qwen3().decode(ids), text);
  }
}

TEST(TokenizerRobustness, LongWordsMatchPlainQuadraticBpe) {
  const NaiveBpe naive;
  const char* units[] = {"a", "ab", "abc", "\xC3\xA9", "xyzzy", "Lorem", "\xE2\x80\x94", "1"};
  for (const char* u : units) {
    for (size_t n : {7, 33, 400}) {
      const std::string word = repeat(u, n);
      std::vector<int32_t> expect;
      if (std::string(u) == "1") {  // \p{N} splits digits one by one
        for (size_t i = 0; i < n; ++i) expect.push_back(16);
      } else {
        expect = naive.encode_word(word);
      }
      EXPECT_EQ(qwen3().encode(word), expect) << u << " x " << n;
    }
  }
  // An irregular long word: letters drawn from a small alphabet.
  std::string word;
  uint32_t x = 12345;
  for (int i = 0; i < 1500; ++i) {
    x = x * 1103515245u + 12345u;
    word += "etaoinshrdlu"[(x >> 16) % 12];
  }
  EXPECT_EQ(qwen3().encode(word), naive.encode_word(word));
}

TEST(TokenizerRobustness, OneMegabytePromptCostGrowsLinearly) {
  std::string text;
  const char* pieces[] = {"A photograph of a cat, ",
                          "\xE4\xB8\xAD\xE6\x96\x87 ",
                          "  \n\t",
                          "12345 ",
                          "<|im_end|>",
                          "\xF0\x9F\x98\x80!? ",
                          "don't ",
                          "\xC3\xA9t\xC3\xA9 "};
  auto mixed = [&](size_t bytes) {
    std::string t;
    for (size_t i = 0; t.size() < bytes; ++i) t += pieces[(i * 7) % 8];
    return t;
  };
  text = mixed(1u << 20);
  const auto ids = qwen3().encode(text);
  EXPECT_EQ(qwen3().decode(ids), text);
  EXPECT_LT(growth_ratio(1u << 20, mixed), 10.0);
  const zimage::TokenizedPrompt tp = qwen3().encode_prompt(text, 512);
  EXPECT_EQ(tp.num_real, 512);
  EXPECT_EQ(tp.num_dropped, int(ids.size()) + 8 - 512);  // + the template's 8 tokens
  // Huge runs of whitespace and of punctuation (regex backtracking paths).
  for (const std::string& unit :
       {std::string(" "), std::string("\n"), std::string(" \n"), std::string("!"), std::string("\xE3\x80\x80")}) {
    const std::string big = repeat(unit, (1u << 20) / unit.size());
    const auto big_ids = qwen3().encode(big);
    EXPECT_EQ(qwen3().decode(big_ids), big);
    EXPECT_LT(growth_ratio((1u << 18) / unit.size(), [&](size_t n) { return repeat(unit, n); }), 10.0)
        << "unit of " << unit.size() << " bytes";
  }
}

TEST(TokenizerRobustness, EncodePromptTruncatesRightAndPads) {
  const auto full = qwen3().encode(qwen3().apply_chat_template("one two three four five"));
  ASSERT_GT(full.size(), 10u);
  const auto tp = qwen3().encode_prompt("one two three four five", 10);
  EXPECT_EQ(tp.input_ids, std::vector<int32_t>(full.begin(), full.begin() + 10));
  EXPECT_EQ(tp.attention_mask, std::vector<int32_t>(10, 1));
  EXPECT_EQ(tp.num_dropped, int(full.size()) - 10);
  const auto padded = qwen3().encode_prompt("one", 20);
  EXPECT_EQ(padded.num_real, 9);
  EXPECT_EQ(padded.num_dropped, 0);
  for (int i = 9; i < 20; ++i) {
    EXPECT_EQ(padded.input_ids[size_t(i)], 151643);
    EXPECT_EQ(padded.attention_mask[size_t(i)], 0);
  }
  EXPECT_THROW(qwen3().encode_prompt("x", 0), zimage::Error);
}

TEST(TokenizerRobustness, ConcurrentEncodesAgree) {
  // One tokenizer shared by threads (the word cache is shared): results equal the serial ones.
  std::vector<std::string> texts;
  for (int i = 0; i < 300; ++i)
    texts.push_back("prompt " + std::to_string(i) + " with words w" + std::to_string(i % 17) +
                    " \xE6\x97\xA5\xE6\x9C\xAC " + repeat("ab", size_t(i % 50)));
  std::vector<std::vector<int32_t>> serial;
  for (const auto& t : texts) serial.push_back(qwen3().encode(t));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int th = 0; th < 4; ++th)
    threads.emplace_back([&, th] {
      for (int rep = 0; rep < 5; ++rep)
        for (size_t i = 0; i < texts.size(); ++i)
          if (qwen3().encode(texts[(i + size_t(th) * 37) % texts.size()]) !=
              serial[(i + size_t(th) * 37) % texts.size()])
            ++mismatches[size_t(th)];
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}
