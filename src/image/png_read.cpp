// PNG decoding with libpng. libpng reports errors by longjmp: each function that calls libpng sets
// its own setjmp and keeps only trivially destructible locals; all C++ state lives in ReadCtx,
// which the caller owns (so a longjmp skips no destructor and leaks nothing).
#include <fcntl.h>
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/file_io.h"
#include "image/text.h"
#include "zimage/image.h"

namespace zimage {

namespace {

struct ReadCtx {
  const uint8_t* data = nullptr;
  size_t size = 0, pos = 0;
  char error[256] = {0};
  png_structp png = nullptr;
  png_infop info = nullptr, end = nullptr;
  // Filled by read_header.
  png_uint_32 width = 0, height = 0;
  int channels = 0, passes = 1;
  size_t rowbytes = 0;
  ~ReadCtx() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, end ? &end : nullptr);
  }
};

void on_error(png_structp png, png_const_charp msg) {
  auto* c = static_cast<ReadCtx*>(png_get_error_ptr(png));
  std::snprintf(c->error, sizeof c->error, "%s", msg);
  png_longjmp(png, 1);
}
void on_warning(png_structp, png_const_charp) {}

void on_read(png_structp png, png_bytep out, size_t n) {
  auto* c = static_cast<ReadCtx*>(png_get_io_ptr(png));
  if (c->size - c->pos < n) png_error(png, "unexpected end of file (truncated PNG)");
  std::memcpy(out, c->data + c->pos, n);
  c->pos += n;
}

bool create(ReadCtx* c) {
  c->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
  if (c->png) c->info = png_create_info_struct(c->png);
  if (c->png) c->end = png_create_info_struct(c->png);
  if (!c->png || !c->info || !c->end) {
    std::snprintf(c->error, sizeof c->error, "cannot create libpng reader");
    return false;
  }
  return true;
}

// Reads the chunks up to the image data and sets up 8-bit gray/GA/RGB/RGBA output.
bool read_header(ReadCtx* c) {
  if (setjmp(png_jmpbuf(c->png))) return false;
  png_set_read_fn(c->png, c, on_read);
  png_read_info(c->png, c->info);
  int bit_depth = png_get_bit_depth(c->png, c->info);
  int color = png_get_color_type(c->png, c->info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
  if (color == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
  if (png_get_valid(c->png, c->info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(c->png);
  if (bit_depth == 16) png_set_scale_16(c->png);
  c->passes = png_set_interlace_handling(c->png);
  png_read_update_info(c->png, c->info);
  c->width = png_get_image_width(c->png, c->info);
  c->height = png_get_image_height(c->png, c->info);
  c->channels = png_get_channels(c->png, c->info);
  c->rowbytes = png_get_rowbytes(c->png, c->info);
  return true;
}

// Decodes all rows into `rows` (one pointer per row) and reads the chunks after the image data.
bool read_image(ReadCtx* c, png_bytepp rows) {
  if (setjmp(png_jmpbuf(c->png))) return false;
  png_read_image(c->png, rows);
  png_read_end(c->png, c->end);
  return true;
}

// Decodes and discards the rows (one row buffer) to reach the chunks after the image data.
bool skip_image(ReadCtx* c, png_bytep row) {
  if (setjmp(png_jmpbuf(c->png))) return false;
  for (int pass = 0; pass < c->passes; ++pass)
    for (png_uint_32 y = 0; y < c->height; ++y) png_read_row(c->png, row, nullptr);
  png_read_end(c->png, c->end);
  return true;
}

// PNG files are read whole; a FIFO or device in place of the file is an error, not a hang.
constexpr uint64_t kMaxPngFileBytes = 1ull << 30;
std::string read_whole_file(const std::string& path) { return read_regular_file(path, kMaxPngFileBytes, "[image] "); }

// Opens `bytes` as a PNG and reads its header; errors name `path`.
void open_png(ReadCtx& c, const std::string& bytes, const std::string& path) {
  if (bytes.size() < 8 || png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8) != 0)
    fail("[image] '", path, "' is not a PNG file (", bytes.size() < 8 ? "too short" : "bad signature", ")");
  // Every chunk up to IEND must fit in the file: libpng allocates a chunk's declared length (up to
  // 2 GB) before it reads the data, so a short file declaring a huge chunk would cost that much.
  for (size_t pos = 8; bytes.size() - pos >= 8;) {
    const auto* b = reinterpret_cast<const unsigned char*>(bytes.data()) + pos;
    const uint64_t len = uint64_t(b[0]) << 24 | uint64_t(b[1]) << 16 | uint64_t(b[2]) << 8 | b[3];
    const std::string type(reinterpret_cast<const char*>(b) + 4, 4);
    const uint64_t left = bytes.size() - pos - 8;  // after the length and type fields
    if (len + 4 > left) {
      const bool printable =
          std::all_of(type.begin(), type.end(), [](char ch) { return std::isalpha((unsigned char)ch); });
      fail("[image] PNG '", path, "' is truncated: chunk '", printable ? type : "?", "' at byte ", pos, " declares ",
           len, " bytes, the file has ", left < 4 ? 0 : left - 4, " left");
    }
    if (type == "IEND") break;
    pos += 12 + size_t(len);
  }
  c.data = reinterpret_cast<const uint8_t*>(bytes.data());
  c.size = bytes.size();
  if (!create(&c) || !read_header(&c)) fail("[image] cannot decode PNG '", path, "': ", c.error);
  if (c.channels < 1 || c.channels > 4 || c.rowbytes != size_t(c.width) * size_t(c.channels))
    fail("[image] cannot decode PNG '", path, "': unsupported layout (", c.channels, " channels, ", c.rowbytes,
         " bytes per row)");
}

void collect_text(png_structp png, png_infop info, std::map<std::string, std::string>& out) {
  png_textp texts = nullptr;
  int n = png_get_text(png, info, &texts, nullptr);
  for (int i = 0; i < n; ++i) {
    const png_text& t = texts[i];
    std::string key = text::latin1_to_utf8(t.key ? t.key : "");
    std::string value;
    if (t.compression == PNG_ITXT_COMPRESSION_NONE || t.compression == PNG_ITXT_COMPRESSION_zTXt)
      value.assign(t.text ? t.text : "", t.itxt_length);
    else
      value = text::latin1_to_utf8(std::string(t.text ? t.text : "", t.text_length));
    out.emplace(std::move(key), std::move(value));
  }
}

}  // namespace

Image read_png(const std::string& path) { return decode_png(read_whole_file(path), path); }

Image decode_png(const std::string& bytes, const std::string& path) {
  ReadCtx c;
  open_png(c, bytes, path);
  const uint64_t total = uint64_t(c.rowbytes) * c.height;
  if (total > (uint64_t(1) << 32))
    fail("[image] PNG '", path, "' is too large: ", c.width, "x", c.height, "x", c.channels);
  // The header alone must not make us allocate: deflate expands at most 1032:1 and no pixel
  // format grows more than 32x on the way to 8-bit samples (1-bit palette -> RGBA), so a file
  // whose size cannot hold the image it claims is refused before the pixel buffer is made.
  if (total / 32 / 1032 > bytes.size())
    fail("[image] PNG '", path, "' is truncated or corrupt: ", bytes.size(), " bytes cannot hold a ", c.width, "x",
         c.height, "x", c.channels, " image");
  Image img;
  img.width = int(c.width);
  img.height = int(c.height);
  img.channels = c.channels;
  img.pixels.resize(size_t(total));
  std::vector<png_bytep> rows(c.height);
  for (size_t y = 0; y < rows.size(); ++y) rows[y] = img.pixels.data() + y * c.rowbytes;
  if (!read_image(&c, rows.data())) fail("[image] cannot decode PNG '", path, "': ", c.error);
  return img;
}

std::map<std::string, std::string> read_png_metadata(const std::string& path) {
  const std::string bytes = read_whole_file(path);
  ReadCtx c;
  open_png(c, bytes, path);
  std::vector<uint8_t> row(c.rowbytes);
  if (!skip_image(&c, row.data())) fail("[image] cannot decode PNG '", path, "': ", c.error);
  std::map<std::string, std::string> out;
  collect_text(c.png, c.info, out);
  collect_text(c.png, c.end, out);
  return out;
}

}  // namespace zimage
