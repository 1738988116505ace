// Fuzzes PNG reading (src/image/png_read.cpp, libpng underneath) and the A1111 infotext parser
// (src/image/infotext.cpp). An input with the PNG signature is written to a file and read with
// read_png_metadata (text chunks before and after the image data; the "parameters" chunk then
// goes through parse_infotext) and read_png (decoded pixels). Any other input is parsed as
// infotext directly. Decoded images must have the size they claim; metadata
// keys (Latin-1 converted) must be valid UTF-8.
#include <cstring>

#include "fuzz_util.h"
#include "image/text.h"
#include "zimage/image.h"

using namespace zimage;

namespace {

void infotext(const std::string& text) {
  const ParsedInfotext p = parse_infotext(text);
  ZIMAGE_FUZZ_CHECK(p.prompt.size() <= text.size() && p.negative_prompt.size() <= text.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const unsigned char kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const std::string_view bytes = fuzz::as_view(data, size);
  if (size < 8 || std::memcmp(data, kSig, 8) != 0) {
    ZIMAGE_FUZZ_EXPECT_ERRORS(infotext(std::string(bytes)));
    return 0;
  }
  static const std::string path = fuzz::scratch() / "input.png";
  fuzz::write_file(path, bytes);
  ZIMAGE_FUZZ_EXPECT_ERRORS({
    const auto meta = read_png_metadata(path);
    for (const auto& [k, v] : meta) ZIMAGE_FUZZ_CHECK(text::valid_utf8(k));
    auto it = meta.find("parameters");
    if (it != meta.end()) ZIMAGE_FUZZ_EXPECT_ERRORS(infotext(it->second));
  });
  ZIMAGE_FUZZ_EXPECT_ERRORS({
    const Image img = read_png(path);
    ZIMAGE_FUZZ_CHECK(img.width > 0 && img.height > 0 && img.channels >= 1 && img.channels <= 4);
    ZIMAGE_FUZZ_CHECK(img.pixels.size() == size_t(img.width) * size_t(img.height) * size_t(img.channels));
  });
  return 0;
}
