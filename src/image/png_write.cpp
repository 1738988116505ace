// PNG encoding with libpng. libpng reports errors by longjmp: the functions that call it keep no
// C++ objects with destructors in the frames that a longjmp skips (see encode_rows).
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <new>

#include "core/error.h"
#include "image/atomic_file.h"
#include "image/text.h"
#include "zimage/image.h"

namespace zimage {

namespace {

struct WriteCtx {
  std::vector<uint8_t>* out = nullptr;
  char error[256] = {0};
};

void on_error(png_structp png, png_const_charp msg) {
  auto* c = static_cast<WriteCtx*>(png_get_error_ptr(png));
  std::snprintf(c->error, sizeof c->error, "%s", msg);
  png_longjmp(png, 1);
}
void on_warning(png_structp, png_const_charp) {}

void on_write(png_structp png, png_bytep data, size_t n) {
  auto* c = static_cast<WriteCtx*>(png_get_io_ptr(png));
  bool ok = true;
  try {
    c->out->insert(c->out->end(), data, data + n);
  } catch (...) {
    ok = false;
  }
  if (!ok) png_error(png, "out of memory");  // after the catch block: no live C++ state
}
void on_flush(png_structp) {}

int color_type(int channels) {
  switch (channels) {
    case 1:
      return PNG_COLOR_TYPE_GRAY;
    case 2:
      return PNG_COLOR_TYPE_GRAY_ALPHA;
    case 3:
      return PNG_COLOR_TYPE_RGB;
    default:
      return PNG_COLOR_TYPE_RGBA;
  }
}

// All libpng calls of an encode. Returns false with ctx->error set on a libpng error.
// Only trivially destructible locals, none modified after setjmp.
bool encode_rows(WriteCtx* ctx, const Image* img, png_bytep* rows, png_text* texts, int ntexts, int level) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, on_error, on_warning);
  if (!png) {
    std::snprintf(ctx->error, sizeof ctx->error, "cannot create libpng writer");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(ctx->error, sizeof ctx->error, "cannot create libpng info");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, ctx, on_write, on_flush);
  png_set_compression_level(png, level);
  png_set_IHDR(png, info, png_uint_32(img->width), png_uint_32(img->height), 8, color_type(img->channels),
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (ntexts > 0) png_set_text(png, info, texts, ntexts);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return true;
}

struct TextChunk {
  std::string key, value;  // key Latin-1; value Latin-1 (tEXt) or UTF-8 (iTXt)
  bool itxt = false;
};

TextChunk make_chunk(const std::string& key, const std::string& value) {
  TextChunk t;
  t.key = text::png_keyword(key);
  if (value.find('\0') != std::string::npos)
    fail("[image] PNG text '", key, "' contains a NUL character (not allowed in PNG text)");
  if (auto l1 = text::utf8_to_latin1(value)) {
    t.value = std::move(*l1);
  } else {
    if (!text::valid_utf8(value)) fail("[image] PNG text '", key, "' is not valid UTF-8");
    t.value = value;
    t.itxt = true;
  }
  return t;
}

}  // namespace

std::vector<uint8_t> encode_png(const Image& img, const PngMetadata& meta, int compression_level) {
  if (img.width <= 0 || img.height <= 0 || img.width > 1000000 || img.height > 1000000)
    fail("[image] cannot encode a ", img.width, "x", img.height, " image: sizes must be 1..1000000");
  if (img.channels < 1 || img.channels > 4)
    fail("[image] cannot encode an image with ", img.channels, " channels: expected 1-4");
  const size_t row_bytes = size_t(img.width) * size_t(img.channels);
  if (img.pixels.size() != row_bytes * size_t(img.height))
    fail("[image] cannot encode a ", img.width, "x", img.height, "x", img.channels, " image from ", img.pixels.size(),
         " bytes (expected ", row_bytes * size_t(img.height), ")");
  if (compression_level < 0 || compression_level > 9)
    fail("[image] PNG compression level ", compression_level, " is not in 0-9");

  std::vector<TextChunk> chunks;
  if (meta.parameters) chunks.push_back(make_chunk("parameters", format_infotext(*meta.parameters)));
  if (!meta.zimage.is_null()) {
    std::string js;
    try {
      js = meta.zimage.dump();
    } catch (const nlohmann::json::exception& e) {
      fail("[image] cannot serialise the zimage metadata: ", e.what());
    }
    chunks.push_back(make_chunk("zimage", js));
  }
  for (const auto& [k, v] : meta.text) chunks.push_back(make_chunk(k, v));

  std::vector<png_text> texts(chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    png_text& t = texts[i];
    std::memset(&t, 0, sizeof t);
    t.compression = chunks[i].itxt ? PNG_ITXT_COMPRESSION_NONE : PNG_TEXT_COMPRESSION_NONE;
    t.key = chunks[i].key.data();
    t.text = chunks[i].value.data();
    t.text_length = chunks[i].itxt ? 0 : chunks[i].value.size();
    t.itxt_length = chunks[i].itxt ? chunks[i].value.size() : 0;
    t.lang = const_cast<char*>("");
    t.lang_key = const_cast<char*>("");
  }
  std::vector<png_bytep> rows(size_t(img.height));
  for (size_t y = 0; y < rows.size(); ++y) rows[y] = const_cast<png_bytep>(img.pixels.data() + y * row_bytes);

  std::vector<uint8_t> out;
  out.reserve(img.pixels.size() / 2 + 1024);
  WriteCtx ctx;
  ctx.out = &out;
  if (!encode_rows(&ctx, &img, rows.data(), texts.data(), int(texts.size()), compression_level))
    fail("[image] PNG encoding failed: ", ctx.error);
  return out;
}

void write_png(const std::string& path, const Image& img, const PngMetadata& meta, const PngWriteOptions& opts) {
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_png(img, meta, opts.compression_level);
  } catch (const Error& e) {
    fail(e.what(), " (writing '", path, "')");
  }
  write_file_atomic(path, bytes.data(), bytes.size(), opts.overwrite);
}

}  // namespace zimage
