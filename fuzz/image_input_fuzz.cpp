// Fuzzes input-image reading for img2img / inpainting (src/image/image_read.cpp: PNG via libpng,
// JPEG via libjpeg-turbo, told apart by the first bytes) and what the pipeline does next with a
// decoded image: convert("RGB") / convert("L"), the Lanczos resize to multiples of 16 and the
// [-1, 1] / binarised-mask tensors. Decoded images must have the size they claim; the tensors
// must be finite and in range.
#include <algorithm>
#include <cmath>

#include "fuzz_util.h"
#include "image/image_processor.h"
#include "zimage/image.h"

using namespace zimage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = fuzz::scratch() / "input.img";
  fuzz::write_file(path, std::string(fuzz::as_view(data, size)));
  ZIMAGE_FUZZ_EXPECT_ERRORS({
    const Image img = read_image(path);
    ZIMAGE_FUZZ_CHECK(img.width > 0 && img.height > 0 && img.channels >= 1 && img.channels <= 4);
    ZIMAGE_FUZZ_CHECK(img.pixels.size() == size_t(img.width) * size_t(img.height) * size_t(img.channels));
    if (size_t(img.width) * size_t(img.height) <= (size_t(1) << 16)) {
      const Image rgb = to_rgb(img), gray = to_gray(img);
      ZIMAGE_FUZZ_CHECK(rgb.channels == 3 && gray.channels == 1);
      const int w = std::max(16, img.width / 16 * 16), h = std::max(16, img.height / 16 * 16);
      const Image r = resize_lanczos(rgb, w, h);
      ZIMAGE_FUZZ_CHECK(r.width == w && r.height == h && r.pixels.size() == size_t(w) * size_t(h) * 3);
      const Tensor x = preprocess_image(r), m = preprocess_mask(r);
      for (float v : x.to_vector()) ZIMAGE_FUZZ_CHECK(v >= -1.f && v <= 1.f);
      for (float v : m.to_vector()) ZIMAGE_FUZZ_CHECK(v == 0.f || v == 1.f);
    }
  });
  return 0;
}
