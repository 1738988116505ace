// Fuzzes the Qwen3 tokenizer on arbitrary prompt bytes: the real tokenizer from
// tests/fixtures/qwen3_tokenizer is loaded once; each input goes through encode, decode, the
// chat template and encode_prompt (truncation and padding). Properties: ids are in the vocabulary,
// ASCII text round-trips through encode + decode (NFC leaves ASCII alone), and the padded prompt
// has exactly max_length entries with num_real ones in the mask.
#include <algorithm>
#include <numeric>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

using namespace zimage;

namespace {
const Qwen2Tokenizer* g_tok = nullptr;
}

// Loading the 11 MB tokenizer.json (under ASan) happens once, before the per-input timeout.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_tok = new Qwen2Tokenizer(Qwen2Tokenizer::from_folder(ZIMAGE_FIXTURES_DIR "/qwen3_tokenizer"));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Qwen2Tokenizer& tok = *g_tok;
  const std::string_view text = fuzz::as_view(data, size);
  ZIMAGE_FUZZ_EXPECT_ERRORS({
    const std::vector<int32_t> ids = tok.encode(text);
    for (int32_t id : ids) ZIMAGE_FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
    const std::string back = tok.decode(ids);
    const bool ascii = std::all_of(text.begin(), text.end(), [](char c) { return (unsigned char)c < 0x80; });
    if (ascii) ZIMAGE_FUZZ_CHECK(back == text);
  });
  ZIMAGE_FUZZ_EXPECT_ERRORS({
    const std::string rendered = tok.apply_chat_template(text);
    ZIMAGE_FUZZ_CHECK(rendered.find(text) != std::string::npos);
  });
  ZIMAGE_FUZZ_EXPECT_ERRORS({
    const int max_length = 1 + int(size % 64);
    const TokenizedPrompt p = tok.encode_prompt(text, max_length);
    ZIMAGE_FUZZ_CHECK(p.input_ids.size() == size_t(max_length) && p.attention_mask.size() == size_t(max_length));
    ZIMAGE_FUZZ_CHECK(std::accumulate(p.attention_mask.begin(), p.attention_mask.end(), 0) == p.num_real);
    ZIMAGE_FUZZ_CHECK(p.num_real >= 0 && p.num_real <= max_length && p.num_dropped >= 0);
  });
  return 0;
}
