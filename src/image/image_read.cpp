// Input images for img2img / inpainting: PNG (libpng, png_read.cpp) and JPEG (libjpeg-turbo),
// converted to RGB or gray the way PIL's Image.convert("RGB") / convert("L") does.
// libjpeg reports errors through error_exit, which longjmps back into the one function that
// calls libjpeg (it keeps only trivially destructible locals; the C++ state lives in JpegCtx).
#include <unistd.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

#include "core/error.h"
#include "core/file_io.h"
#include "zimage/image.h"

namespace zimage {

namespace {

constexpr uint64_t kMaxImageFileBytes = 1ull << 30;

struct JpegCtx {
  jpeg_decompress_struct cinfo{};
  jpeg_error_mgr jerr{};
  std::jmp_buf jump;
  char error[JMSG_LENGTH_MAX] = {0};
  bool created = false;
  ~JpegCtx() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

void jpeg_on_error(j_common_ptr cinfo) {
  auto* c = reinterpret_cast<JpegCtx*>(cinfo->client_data);
  (*cinfo->err->format_message)(cinfo, c->error);
  std::longjmp(c->jump, 1);
}
void jpeg_on_message(j_common_ptr, int) {}  // warnings (e.g. corrupt data recovered) are not fatal, as in PIL

bool jpeg_header(JpegCtx* c, const std::string& bytes) {
  if (setjmp(c->jump)) return false;
  jpeg_create_decompress(&c->cinfo);
  c->created = true;
  jpeg_mem_src(&c->cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), (unsigned long)bytes.size());
  jpeg_read_header(&c->cinfo, TRUE);
  return true;
}

bool jpeg_decode(JpegCtx* c, Image* img) {
  if (setjmp(c->jump)) return false;
  jpeg_start_decompress(&c->cinfo);
  const size_t stride = size_t(img->width) * size_t(img->channels);
  while (c->cinfo.output_scanline < c->cinfo.output_height) {
    JSAMPROW row = img->pixels.data() + size_t(c->cinfo.output_scanline) * stride;
    jpeg_read_scanlines(&c->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&c->cinfo);
  return true;
}

// PIL's L = R * 299/1000 + G * 587/1000 + B * 114/1000 in 16-bit fixed point (Convert.c, L24).
inline uint8_t luma(const uint8_t* rgb) {
  return uint8_t((uint32_t(rgb[0]) * 19595 + uint32_t(rgb[1]) * 38470 + uint32_t(rgb[2]) * 7471 + 0x8000) >> 16);
}

// What the first bytes say: the PNG signature, or JPEG's SOI marker.
enum class ImageKind { Png, Jpeg, Other };
ImageKind image_kind(const std::string& head) {
  static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (head.size() >= 8 && std::memcmp(head.data(), png_sig, 8) == 0) return ImageKind::Png;
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0xFF && static_cast<unsigned char>(head[1]) == 0xD8)
    return ImageKind::Jpeg;
  return ImageKind::Other;
}

void check_image(const Image& img, const char* what) {
  if (img.width <= 0 || img.height <= 0 || img.channels < 1 || img.channels > 4 ||
      img.pixels.size() != size_t(img.width) * size_t(img.height) * size_t(img.channels))
    fail("[image] ", what, ": invalid image (", img.width, "x", img.height, ", ", img.channels, " channels, ",
         img.pixels.size(), " bytes)");
}

}  // namespace

Image read_jpeg(const std::string& path) {
  return decode_jpeg(read_regular_file(path, kMaxImageFileBytes, "[image] "), path);
}

Image decode_jpeg(const std::string& bytes, const std::string& path) {
  if (bytes.size() < 3 || static_cast<unsigned char>(bytes[0]) != 0xFF || static_cast<unsigned char>(bytes[1]) != 0xD8)
    fail("[image] '", path, "' is not a JPEG file (", bytes.size() < 3 ? "too short" : "bad signature", ")");
  JpegCtx c;
  c.cinfo.err = jpeg_std_error(&c.jerr);
  c.jerr.error_exit = jpeg_on_error;
  c.jerr.emit_message = jpeg_on_message;
  c.cinfo.client_data = &c;
  if (!jpeg_header(&c, bytes)) fail("[image] cannot decode JPEG '", path, "': ", c.error);
  const J_COLOR_SPACE cs = c.cinfo.jpeg_color_space;
  if (cs == JCS_CMYK || cs == JCS_YCCK) fail("[image] JPEG '", path, "' is CMYK; convert it to RGB first");
  c.cinfo.out_color_space = c.cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  const uint64_t w = c.cinfo.image_width, h = c.cinfo.image_height, ch = c.cinfo.num_components == 1 ? 1 : 3;
  if (w == 0 || h == 0 || w * h * ch > (uint64_t(1) << 32))
    fail("[image] JPEG '", path, "' has an unsupported size ", w, "x", h);
  // A JPEG compresses at most about 1:4000 (all-DC blocks); a file too small for the size it
  // claims is refused before the pixel buffer is made.
  if (w * h * ch / 8192 > bytes.size())
    fail("[image] JPEG '", path, "' is truncated or corrupt: ", bytes.size(), " bytes cannot hold a ", w, "x", h,
         " image");
  Image img;
  img.width = int(w);
  img.height = int(h);
  img.channels = int(ch);
  img.pixels.resize(size_t(w * h * ch));
  if (!jpeg_decode(&c, &img)) fail("[image] cannot decode JPEG '", path, "': ", c.error);
  return img;
}

Image read_image(const std::string& path) {
  const std::string head = [&] {
    RegularFile f(path, "[image] ");
    char b[8] = {0};
    const ssize_t n = ::pread(f.fd(), b, sizeof b, 0);
    return std::string(b, n > 0 ? size_t(n) : 0);
  }();
  switch (image_kind(head)) {
    case ImageKind::Png:
      return read_png(path);
    case ImageKind::Jpeg:
      return read_jpeg(path);
    default:
      fail("[image] '", path, "' is neither a PNG nor a JPEG file");
  }
}

Image decode_image(const std::string& bytes, const std::string& name) {
  switch (image_kind(bytes)) {
    case ImageKind::Png:
      return decode_png(bytes, name);
    case ImageKind::Jpeg:
      return decode_jpeg(bytes, name);
    default:
      fail("[image] '", name, "' is neither a PNG nor a JPEG image");
  }
}

Image to_rgb(const Image& img) {
  check_image(img, "to_rgb");
  if (img.channels == 3) return img;
  Image out;
  out.width = img.width;
  out.height = img.height;
  out.channels = 3;
  const size_t n = size_t(img.width) * size_t(img.height);
  out.pixels.resize(n * 3);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* s = img.pixels.data() + i * size_t(img.channels);
    uint8_t* d = out.pixels.data() + i * 3;
    if (img.channels <= 2)
      d[0] = d[1] = d[2] = s[0];  // L, LA: gray replicated, alpha dropped
    else
      std::memcpy(d, s, 3);  // RGBA: alpha dropped (not composited)
  }
  return out;
}

Image to_gray(const Image& img) {
  check_image(img, "to_gray");
  if (img.channels == 1) return img;
  Image out;
  out.width = img.width;
  out.height = img.height;
  out.channels = 1;
  const size_t n = size_t(img.width) * size_t(img.height);
  out.pixels.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* s = img.pixels.data() + i * size_t(img.channels);
    out.pixels[i] = img.channels <= 2 ? s[0] : luma(s);
  }
  return out;
}

}  // namespace zimage
