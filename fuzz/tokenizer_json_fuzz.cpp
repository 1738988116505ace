// Fuzzes loading a tokenizer (Qwen2Tokenizer::from_json_text, src/tokenizer/loader.cpp and the
// normalizer / pre-tokenizer / added-token / chat-template parsers it calls). The first input
// byte picks which file the rest replaces; the other files are the small valid ones in fuzz/data:
//   0 tokenizer.json   1 tokenizer_config.json   2 chat_template.jinja
// A tokenizer that loads must then work: encode, decode, the chat template and every token id.
#include <fstream>
#include <sstream>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

using namespace zimage;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "zimage fuzz: cannot read %s\n", path.c_str());
    std::abort();
  }
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void exercise(const Qwen2Tokenizer& t) {
  for (const char* s :
       {"", "a photo of a cat", "  <|im_start|>x<|im_end|>\n\t", "\xe4\xb8\xad\xe6\x96\x87 caf\xc3\xa9"}) {
    std::vector<int32_t> ids = t.encode(s);
    for (int32_t id : ids) ZIMAGE_FUZZ_CHECK(id >= 0 && id < t.vocab_size());
    (void)t.decode(ids);
    (void)t.decode(ids, true);
    ZIMAGE_FUZZ_EXPECT_ERRORS((void)t.encode_prompt(s, 16));
  }
  ZIMAGE_FUZZ_EXPECT_ERRORS((void)t.apply_chat_template("a cat"));
  const int32_t n = std::min<int32_t>(t.vocab_size(), 512);
  for (int32_t id = 0; id < n; ++id) {
    ZIMAGE_FUZZ_EXPECT_ERRORS({
      const std::string tokstr = t.id_to_token(id);
      ZIMAGE_FUZZ_CHECK(t.token_to_id(tokstr) >= 0);
    });
  }
  (void)t.pad_token_id();
  (void)t.eos_token_id();
}

std::string tokenizer_json, config_json;

}  // namespace

// The fixed halves must load, or every input would only reach the first error.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tokenizer_json = slurp(ZIMAGE_FUZZ_DATA_DIR "/mini_tokenizer.json");
  config_json = slurp(ZIMAGE_FUZZ_DATA_DIR "/mini_tokenizer_config.json");
  try {
    exercise(Qwen2Tokenizer::from_json_text(tokenizer_json, config_json, "fuzz/data"));
  } catch (const zimage::Error& e) {
    std::fprintf(stderr, "zimage fuzz: fuzz/data tokenizer does not load: %s\n", e.what());
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int which = data[0] % 3;
  const std::string bytes(fuzz::as_view(data + 1, size - 1));
  ZIMAGE_FUZZ_EXPECT_ERRORS({
    const Qwen2Tokenizer t =
        Qwen2Tokenizer::from_json_text(which == 0 ? bytes : tokenizer_json, which == 1 ? bytes : config_json, "fuzz",
                                       which == 2 ? bytes : std::string());
    exercise(t);
  });
  return 0;
}
