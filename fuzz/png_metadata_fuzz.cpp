// Fuzzes PNG reading (src/image/png_read.cpp, libpng underneath) and the A1111 infotext parser
// (src/image/infotext.cpp). An input with the PNG signature gets its chunk CRCs fixed up, is
// written to a file and read with read_png_metadata (text chunks before and after the image data;
// the "parameters" chunk then goes through parse_infotext) and read_png (decoded pixels). Any
// other input is parsed as infotext directly. Decoded images must have the size they claim;
// metadata keys (Latin-1 converted) must be valid UTF-8.
#include <array>
#include <cstring>

#include "fuzz_util.h"
#include "image/text.h"
#include "zimage/image.h"

using namespace zimage;

namespace {

uint32_t crc32(const unsigned char* p, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

// Rewrites every chunk's CRC so that mutations reach the chunk parsers instead of libpng's CRC
// check (a fuzzer cannot compute CRCs; the check itself is libpng's, not ours).
void fix_crcs(std::string& png) {
  size_t pos = 8;
  while (pos + 12 <= png.size()) {
    const auto* b = reinterpret_cast<const unsigned char*>(png.data());
    const uint32_t len = uint32_t(b[pos]) << 24 | uint32_t(b[pos + 1]) << 16 | uint32_t(b[pos + 2]) << 8 | b[pos + 3];
    if (len > png.size() - pos - 12) break;
    const uint32_t crc = crc32(b + pos + 4, size_t(len) + 4);
    for (int i = 0; i < 4; ++i) png[pos + 8 + len + size_t(i)] = char((crc >> (24 - 8 * i)) & 0xff);
    pos += size_t(len) + 12;
  }
}

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
  std::string png(bytes);
  fix_crcs(png);
  fuzz::write_file(path, png);
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
