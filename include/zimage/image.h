// Images and PNG files: the output end of the pipeline.
//
// An Image is 8-bit, row-major, channels last (HWC): pixel (x, y) channel c is
// pixels[(y * width + x) * channels + c]. channels is 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA).
//
// PNG files are written atomically (temporary file in the same folder, fsync, rename) and carry
// two text chunks: "parameters" (the Automatic1111 infotext that A1111/Forge/ComfyUI/civitai
// viewers read) and "zimage" (JSON with every generation parameter, for exact regeneration).
// Text that is Latin-1 goes into tEXt chunks (as Pillow's PngInfo.add_text does), anything else
// (e.g. a Chinese prompt) into uncompressed UTF-8 iTXt chunks.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace zimage {

struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;  // [height, width, channels]
};

// The fields of an A1111 infotext. Rendered as
//   {prompt}
//   Negative prompt: {negative_prompt}          (line omitted when the negative prompt is empty)
//   Steps: 8, Sampler: Euler, CFG scale: 0, Seed: 42, Size: 1024x1024, Model: Z-Image-Turbo, {extra...}
// Values containing ',', ':' or a newline are JSON-quoted (A1111's infotext_utils.quote).
struct InfotextParams {
  std::string prompt;
  std::string negative_prompt;
  int steps = 0;
  std::string sampler = "Euler";
  double cfg_scale = 0.0;
  uint64_t seed = 0;
  int width = 0, height = 0;
  std::string model;  // omitted when empty
  // Further "Key: value" pairs appended in order (e.g. {"Shift", "3"}, {"Version", "zimage.cpp 0.1.0"}).
  std::vector<std::pair<std::string, std::string>> extra;
};

// Formats the A1111 "parameters" text (see InfotextParams).
std::string format_infotext(const InfotextParams& p);

// Parses an A1111 infotext the way A1111's parse_generation_parameters does: the last line is the
// "Key: value, ..." line if it holds at least 3 pairs; lines before it are the prompt until a line
// starting with "Negative prompt:". Lines are whitespace-stripped (as A1111 does), so the exact
// prompt lives in the "zimage" JSON chunk. Returns prompt, negative prompt and each key (unquoted).
struct ParsedInfotext {
  std::string prompt, negative_prompt;
  std::vector<std::pair<std::string, std::string>> params;  // in file order, JSON-unquoted
};
ParsedInfotext parse_infotext(const std::string& text);

// The generation parameters zimage reads back from an A1111 infotext (`zimage generate
// --from-png` on a PNG that carries only "parameters"). Keys absent from the text stay empty.
struct InfotextValues {
  std::string prompt, negative_prompt;
  std::optional<int> steps;          // "Steps: 8"
  std::optional<double> cfg_scale;   // "CFG scale: 3.5"
  std::optional<uint64_t> seed;      // "Seed: 42"
  std::optional<int> width, height;  // "Size: 1024x768"
  std::optional<std::string> model;  // "Model: Z-Image-Turbo"
};
// parse_infotext, then converts the values: Steps an integer, CFG scale a finite number, Seed an
// integer in [0, 2^64-1], Size "<width>x<height>" with integer sides. A malformed value is a
// zimage::Error naming the key and the value ("[image] infotext Steps '8.5' is not an integer").
InfotextValues read_infotext(const std::string& text);

struct PngMetadata {
  std::optional<InfotextParams> parameters;  // -> "parameters" chunk
  nlohmann::json zimage;                     // -> "zimage" chunk (compact JSON) unless null
  // Any further text chunks, written in order after the two above. Keys: 1-79 Latin-1 characters.
  std::vector<std::pair<std::string, std::string>> text;
};

struct PngWriteOptions {
  bool overwrite = true;      // false: an existing file at the path is an error, and it is left alone
  int compression_level = 6;  // zlib level 0-9 (6 = Pillow's and zlib's default)
};

// Encodes and writes a PNG atomically. Errors (zimage::Error, "[image] ...") name the path and the
// OS reason; on any error nothing is left behind and an existing file is untouched.
void write_png(const std::string& path, const Image& img, const PngMetadata& meta = {},
               const PngWriteOptions& opts = {});

// Encodes a PNG into memory (what write_png writes).
std::vector<uint8_t> encode_png(const Image& img, const PngMetadata& meta = {}, int compression_level = 6);

// Decodes a PNG: palette and low-bit-depth images are expanded to 8 bits, tRNS to an alpha channel,
// 16-bit samples are scaled to 8 bits. Not a PNG, truncated or corrupt -> zimage::Error naming the path.
Image read_png(const std::string& path);
// Decodes a baseline or progressive JPEG (libjpeg-turbo, default settings as PIL: islow DCT, fancy
// upsampling): 3 channels, or 1 for a grayscale JPEG. CMYK is refused.
Image read_jpeg(const std::string& path);
// An input image: a PNG or a JPEG, told apart by the file's first bytes (not its name). Keeps the
// file's channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; a palette PNG comes back as RGB or RGBA).
Image read_image(const std::string& path);
// The same from bytes in memory (an upload); `name` names the image in errors. The same checks
// and size bounds as the file readers.
Image decode_png(const std::string& bytes, const std::string& name);
Image decode_jpeg(const std::string& bytes, const std::string& name);
Image decode_image(const std::string& bytes, const std::string& name);
// PIL's convert("RGB"): gray is replicated, alpha is dropped (not composited over a background).
Image to_rgb(const Image& img);
// PIL's convert("L"): L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, alpha dropped.
Image to_gray(const Image& img);
// All text chunks (tEXt, zTXt, iTXt; before and after the image data), values as UTF-8
// (Latin-1 tEXt/zTXt text is converted). A repeated key keeps its first value.
std::map<std::string, std::string> read_png_metadata(const std::string& path);

// Output numbering. Returns the first of these that does not exist:
//   index == 0:  "out.png", "out-1.png", "out-2.png", ...
//   index == n:  "out-n.png", "out-(n+1).png", ...
// i.e. the stem gets "-<number>" before the extension (no zero padding), and the plain name counts
// as number 0. Writing the result with overwrite=false guards against a file appearing meanwhile.
std::string next_free_path(const std::string& path, int index = 0);

}  // namespace zimage
