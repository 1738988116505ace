#include "server/request.h"

#include <charconv>
#include <cmath>
#include <limits>

#include "core/file_io.h"
#include "server/params.h"

namespace zimage::server {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& field, const std::string& msg) {
  throw RequestError(400, field, "[serve] '" + field + "' " + msg);
}

std::string shown(const json& v) { return json_excerpt(v, 60); }

// A field's value, or nullptr when it is absent or null.
const json* get(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}
// The first of several names (aliases) that is present.
const json* get_any(const json& j, std::initializer_list<const char*> keys, std::string& name) {
  for (const char* k : keys)
    if (const json* v = get(j, k)) {
      name = k;
      return v;
    }
  return nullptr;
}

std::string str(const std::string& field, const json& v) {
  if (!v.is_string()) bad(field, "is " + shown(v) + ", expected a string");
  return v.get<std::string>();
}

bool boolean(const std::string& field, const json& v) {
  if (!v.is_boolean()) bad(field, "is " + shown(v) + ", expected true or false");
  return v.get<bool>();
}

double number(const std::string& field, const json& v, double lo, double hi) {
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < lo || v.get<double>() > hi) {
    std::string range = "a number in [" + json(lo).dump() + ", " + json(hi).dump() + "]";
    bad(field, "is " + shown(v) + ", expected " + range);
  }
  return v.get<double>();
}

// An integral JSON number (8 or 8.0, not 8.5) in [lo, hi]; `why` explains the bound (e.g. " (--max-steps)").
int64_t integer(const std::string& field, const json& v, int64_t lo, int64_t hi, const std::string& why = "") {
  bool ok = false;
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    ok = u <= uint64_t(std::numeric_limits<int64_t>::max());
    x = int64_t(u);
  } else if (v.is_number_integer()) {
    ok = true;
    x = v.get<int64_t>();
  } else if (v.is_number_float()) {
    double d = v.get<double>();
    ok = std::isfinite(d) && std::trunc(d) == d && std::fabs(d) < 9.0e15;
    x = ok ? int64_t(d) : 0;
  }
  if (!ok || x < lo || x > hi)
    bad(field,
        "is " + shown(v) + ", expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]" + why);
  return x;
}

// A seed: an integer in [0, 2^64-1], or -1 for a random seed (nullopt).
std::optional<uint64_t> seed_value(const std::string& field, const json& v) {
  const std::string expected = ", expected an integer in [0, 18446744073709551615] or -1 for a random seed";
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    if (v.get<int64_t>() == -1) return std::nullopt;
    bad(field, "is " + shown(v) + expected);
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d == -1.0) return std::nullopt;
    if (std::isfinite(d) && std::trunc(d) == d && d >= 0 && d < 18446744073709551616.0) return uint64_t(d);
  }
  bad(field, "is " + shown(v) + expected);
}

// "WxH" with decimal sides (or "auto": the defaults).
void parse_size(const std::string& field, const std::string& s, const Defaults& d, int& w, int& h) {
  if (s == "auto") {
    w = d.width;
    h = d.height;
    return;
  }
  size_t x = s.find('x');
  auto side = [&](std::string_view t, int& out) {
    if (t.empty() || t.size() > 6) return false;
    for (char c : t)
      if (c < '0' || c > '9') return false;
    std::from_chars(t.data(), t.data() + t.size(), out);
    return out > 0;
  };
  if (x == std::string::npos || !side(std::string_view(s).substr(0, x), w) ||
      !side(std::string_view(s).substr(x + 1), h))
    bad(field, "is \"" + s.substr(0, 40) + "\", expected \"<width>x<height>\" (e.g. \"1024x1024\") or \"auto\"");
}

json parse_body(const std::string& body) {
  if (body.empty()) throw RequestError(400, "", "[serve] the request body is empty, expected a JSON object");
  json j;
  try {
    j = parse_json_text(body, "request body", "[serve] ");
  } catch (const Error& e) {
    throw RequestError(400, "", e.what());
  }
  if (!j.is_object())
    throw RequestError(400, "", "[serve] the request body is " + shown(j) + ", expected a JSON object");
  return j;
}

void check_size(const std::string& wf, const std::string& hf, int w, int h, const Limits& l) {
  const std::string why = " (--max-size " + std::to_string(l.max_size) + ")";
  for (auto [f, v] : {std::pair<const std::string&, int>{wf, w}, {hf, h}}) {
    if (v < 16 || v > l.max_size)
      bad(f,
          "is " + std::to_string(v) + ", expected a multiple of 16 in [16, " + std::to_string(l.max_size) + "]" + why);
    if (v % 16 != 0)
      bad(f, "is " + std::to_string(v) + ", expected a multiple of 16 (e.g. " +
                 std::to_string(std::max(16, (v + 8) / 16 * 16)) + ")");
  }
}

// Prompts beyond this are refused: the text encoder keeps max_sequence_length tokens (512 by
// default) anyway, and tokenizing megabytes would hold the queue.
constexpr size_t kMaxPromptBytes = 65536;

// Checks shared by every route, then the pipeline's own validation (the CLI's).
void finish(GenerateRequest& r, const Limits& l, const std::string& wf, const std::string& hf) {
  check_size(wf, hf, r.width, r.height, l);
  if (r.prompt.size() <= kMaxPromptBytes) r.loras = extract_lora_tags(r.prompt);
  for (auto [f, v] :
       {std::pair<const char*, const std::string&>{"prompt", r.prompt}, {"negative_prompt", r.negative_prompt}})
    if (v.size() > kMaxPromptBytes)
      bad(f, "is " + std::to_string(v.size()) + " bytes long, more than " + std::to_string(kMaxPromptBytes));
  try {
    params::check_prompt_text({r.prompt}, "'prompt'", "[serve] ");
  } catch (const Error& e) {
    throw RequestError(400, "prompt", e.what());
  }
  try {
    params::check_prompt_text({r.negative_prompt}, "'negative_prompt'", "[serve] ");
  } catch (const Error& e) {
    throw RequestError(400, "negative_prompt", e.what());
  }
  try {
    validate_call_params(to_call_params(r));
  } catch (const Error& e) {
    throw RequestError(400, "", e.what());
  }
}

// A request of `api` holding the server's defaults (generate's options), before its fields.
GenerateRequest with_defaults(Api api, const Defaults& d) {
  GenerateRequest r;
  r.api = api;
  r.width = d.width;
  r.height = d.height;
  r.steps = d.steps;
  r.guidance = d.guidance;
  r.negative_prompt = d.negative_prompt;
  r.cfg_normalization = d.cfg_normalization;
  r.cfg_truncation = d.cfg_truncation;
  r.max_sequence_length = d.max_sequence_length;
  return r;
}

// The fields of OpenAI's request (and the job API's, which takes width/height too).
GenerateRequest from_openai_json(const json& j, Api api, const Defaults& d, const Limits& l) {
  GenerateRequest r = with_defaults(api, d);
  const json* p = get(j, "prompt");
  if (!p) bad("prompt", "is missing");
  r.prompt = str("prompt", *p);
  if (auto* v = get(j, "negative_prompt")) r.negative_prompt = str("negative_prompt", *v);
  if (auto* v = get(j, "n")) r.num_images = int(integer("n", *v, 1, l.max_images, " (--max-images)"));
  std::string wf = "size", hf = "size";
  if (auto* v = get(j, "size")) parse_size("size", str("size", *v), d, r.width, r.height);
  if (api == Api::Jobs) {
    if (auto* v = get(j, "width")) r.width = int(integer("width", *v, 16, l.max_size, " (--max-size)")), wf = "width";
    if (auto* v = get(j, "height"))
      r.height = int(integer("height", *v, 16, l.max_size, " (--max-size)")), hf = "height";
  }
  if (auto* v = get(j, "response_format")) {
    r.response_format = str("response_format", *v);
    if (r.response_format != "b64_json" && r.response_format != "url")
      bad("response_format", "is \"" + r.response_format.substr(0, 40) + "\", expected \"b64_json\" or \"url\"");
  }
  if (auto* v = get(j, "model")) r.model = str("model", *v);
  std::string name;
  if (auto* v = get_any(j, {"steps", "num_inference_steps"}, name))
    r.steps = int(integer(name, *v, 1, l.max_steps, " (--max-steps)"));
  if (auto* v = get_any(j, {"guidance", "guidance_scale"}, name)) r.guidance = number(name, *v, 0, 100);
  if (auto* v = get(j, "cfg_normalization")) r.cfg_normalization = boolean("cfg_normalization", *v);
  if (auto* v = get(j, "cfg_truncation")) r.cfg_truncation = number("cfg_truncation", *v, 0, 1e6);
  std::optional<uint64_t> seed;
  if (auto* v = get(j, "seed")) seed = seed_value("seed", *v);
  r.seeds = {seed ? *seed : params::random_seed()};
  finish(r, l, wf, hf);
  return r;
}

GenerateRequest from_sdapi_json(const json& j, const Defaults& d, const Limits& l) {
  GenerateRequest r = with_defaults(Api::Sdapi, d);
  if (auto* v = get(j, "prompt")) r.prompt = str("prompt", *v);  // A1111's default prompt is ""
  if (auto* v = get(j, "negative_prompt")) r.negative_prompt = str("negative_prompt", *v);
  if (auto* v = get(j, "steps")) r.steps = int(integer("steps", *v, 1, l.max_steps, " (--max-steps)"));
  if (auto* v = get(j, "cfg_scale")) r.guidance = number("cfg_scale", *v, 0, 100);
  if (auto* v = get(j, "width")) r.width = int(integer("width", *v, 16, l.max_size, " (--max-size)"));
  if (auto* v = get(j, "height")) r.height = int(integer("height", *v, 16, l.max_size, " (--max-size)"));
  int64_t batch = 1, iters = 1;
  if (auto* v = get(j, "batch_size")) batch = integer("batch_size", *v, 1, l.max_images, " (--max-images)");
  if (auto* v = get(j, "n_iter")) iters = integer("n_iter", *v, 1, l.max_images, " (--max-images)");
  if (batch * iters > l.max_images)
    bad("n_iter", "is " + std::to_string(iters) + ": batch_size x n_iter = " + std::to_string(batch * iters) +
                      " images, more than --max-images " + std::to_string(l.max_images));
  r.num_images = int(batch * iters);
  std::optional<uint64_t> seed;
  if (auto* v = get(j, "seed")) seed = seed_value("seed", *v);
  uint64_t base = seed ? *seed : params::random_seed();
  for (int i = 0; i < r.num_images; ++i) r.seeds.push_back(base + uint64_t(i));  // A1111: seed + image index
  finish(r, l, "width", "height");
  return r;
}

// An image field's bytes must be a PNG or JPEG file.
void check_image_bytes(const std::string& field, const std::string& bytes) {
  static const std::string png("\x89PNG\r\n\x1a\n", 8), jpeg("\xff\xd8\xff", 3);
  if (bytes.rfind(png, 0) != 0 && bytes.rfind(jpeg, 0) != 0) bad(field, "is not a PNG or JPEG image");
}

// base64, optionally as a data: URL ("data:image/png;base64,....").
std::string image_from_base64(const std::string& field, const json& v) {
  std::string s = str(field, v);
  if (s.rfind("data:", 0) == 0) {
    size_t c = s.find(";base64,");
    if (c == std::string::npos) bad(field, "is a data: URL without ';base64,'");
    s = s.substr(c + 8);
  }
  std::string bytes = base64_decode(s, field);
  check_image_bytes(field, bytes);
  return bytes;
}

int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::string base64_decode(const std::string& s, const std::string& field) {
  size_t n = s.size();
  while (n > 0 && s[n - 1] == '=' && s.size() - n < 2) --n;
  if (n % 4 == 1) bad(field, "is not valid base64 (its length " + std::to_string(s.size()) + " is impossible)");
  std::string out;
  out.reserve(n / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    int v = b64_value(static_cast<unsigned char>(s[i]));
    if (v < 0) bad(field, "is not valid base64 (byte " + std::to_string(i) + ")");
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xff));
    }
  }
  if (out.empty()) bad(field, "is empty");
  return out;
}

std::string base64_encode(const void* data, size_t n) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = uint32_t(p[i]) << 16 | (i + 1 < n ? uint32_t(p[i + 1]) << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    out.push_back(t[v >> 18 & 63]);
    out.push_back(t[v >> 12 & 63]);
    out.push_back(i + 1 < n ? t[v >> 6 & 63] : '=');
    out.push_back(i + 2 < n ? t[v & 63] : '=');
  }
  return out;
}

GenerateRequest parse_openai_generation(const std::string& body, const Defaults& d, const Limits& l) {
  return from_openai_json(parse_body(body), Api::OpenAI, d, l);
}

GenerateRequest parse_job(const std::string& body, const Defaults& d, const Limits& l) {
  return from_openai_json(parse_body(body), Api::Jobs, d, l);
}

GenerateRequest parse_sdapi_txt2img(const std::string& body, const Defaults& d, const Limits& l) {
  return from_sdapi_json(parse_body(body), d, l);
}

namespace {

Image decode_field(const std::string& field, const std::string& bytes, const Limits& l) {
  Image img;
  try {
    img = decode_image(bytes, field);
  } catch (const Error& e) {
    throw RequestError(400, field, std::string("[serve] '") + field + "' cannot be decoded: " + e.what());
  }
  if (img.width > l.max_size || img.height > l.max_size)
    bad(field, "is " + std::to_string(img.width) + "x" + std::to_string(img.height) + ", larger than --max-size " +
                   std::to_string(l.max_size));
  if (img.width < 16 || img.height < 16)
    bad(field, "is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                   ": its sides must be at least 16 pixels");
  return img;
}

// An img2img / inpaint request: one init image, decoded with its mask; the output size is the
// image's (sides rounded down to multiples of 16, as VaeImageProcessor does); the whole call is
// validated as the pipeline will run it. `openai_mask`: OpenAI's edits mask marks the area to
// edit by full transparency (alpha 0); it becomes white (repaint) on black.
void prepare_edit(GenerateRequest& r, const Limits& l, const std::string& image_field, bool openai_mask) {
  if (r.init_images.size() != 1)
    bad(image_field, "has " + std::to_string(r.init_images.size()) +
                         " images; one init image per request is supported (use the batch size for more outputs)");
  r.image = decode_field(image_field == "init_images" ? "init_images[0]" : image_field, r.init_images[0], l);
  if (!r.mask.empty()) {
    Image m = decode_field("mask", r.mask, l);
    if (m.width != r.image->width || m.height != r.image->height)
      bad("mask", "is " + std::to_string(m.width) + "x" + std::to_string(m.height) + " but the image is " +
                      std::to_string(r.image->width) + "x" + std::to_string(r.image->height) +
                      "; they must be the same size");
    if (openai_mask && (m.channels == 2 || m.channels == 4)) {
      Image w;
      w.width = m.width;
      w.height = m.height;
      w.channels = 1;
      w.pixels.resize(size_t(m.width) * size_t(m.height));
      for (size_t i = 0; i < w.pixels.size(); ++i)
        w.pixels[i] = m.pixels[i * m.channels + m.channels - 1] == 0 ? 255 : 0;
      m = std::move(w);
    }
    r.mask_image = std::move(m);
  }
  r.width = r.image->width / 16 * 16;
  r.height = r.image->height / 16 * 16;
  try {
    validate_call_params(to_call_params(r));
  } catch (const Error& e) {
    throw RequestError(400, "", e.what());
  }
}

}  // namespace

GenerateRequest parse_sdapi_img2img(const std::string& body, const Defaults& d, const Limits& l) {
  json j = parse_body(body);
  const json* imgs = get(j, "init_images");
  if (!imgs) bad("init_images", "is missing (give a list of base64 images)");
  if (!imgs->is_array() || imgs->empty() || imgs->size() > size_t(l.max_images))
    bad("init_images",
        "is " + shown(*imgs) + ", expected a list of 1 to " + std::to_string(l.max_images) + " base64 images");
  GenerateRequest r = from_sdapi_json(j, d, l);
  r.img2img = true;
  for (size_t i = 0; i < imgs->size(); ++i)
    r.init_images.push_back(image_from_base64("init_images[" + std::to_string(i) + "]", (*imgs)[i]));
  if (auto* v = get(j, "mask")) r.mask = image_from_base64("mask", *v);
  if (auto* v = get(j, "denoising_strength")) r.denoising_strength = number("denoising_strength", *v, 0, 1);
  prepare_edit(r, l, "init_images", false);
  return r;
}

GenerateRequest parse_openai_edit(const std::vector<FormField>& fields, const Defaults& d, const Limits& l) {
  json j = json::object();
  std::vector<std::string> images;
  std::string mask;
  for (const FormField& f : fields) {
    if (f.name == "image" || f.name == "image[]") {
      check_image_bytes("image", f.content);
      images.push_back(f.content);
    } else if (f.name == "mask") {
      check_image_bytes("mask", f.content);
      mask = f.content;
    } else if (f.name == "n" || f.name == "steps" || f.name == "num_inference_steps" || f.name == "seed" ||
               f.name == "guidance" || f.name == "guidance_scale" || f.name == "cfg_truncation" ||
               f.name == "strength") {
      // Form values are text: a number must be all of it.
      json v;
      try {
        if (f.content.size() <= 64) v = parse_json_text(f.content, f.name, "[serve] ");
      } catch (const Error&) {}
      if (!v.is_number()) bad(f.name, "is \"" + f.content.substr(0, 40) + "\", expected a number");
      j[f.name] = v;
    } else if (f.name == "cfg_normalization") {
      if (f.content != "true" && f.content != "false")
        bad(f.name, "is \"" + f.content.substr(0, 40) + "\", expected true or false");
      j[f.name] = f.content == "true";
    } else if (f.name == "prompt" || f.name == "negative_prompt" || f.name == "size" || f.name == "response_format" ||
               f.name == "model") {
      j[f.name] = f.content;
    }
  }
  if (images.empty()) bad("image", "is missing (multipart field 'image' with a PNG or JPEG file)");
  if (images.size() > size_t(l.max_images))
    bad("image",
        "has " + std::to_string(images.size()) + " files, more than --max-images " + std::to_string(l.max_images));
  GenerateRequest r = from_openai_json(j, Api::OpenAI, d, l);
  r.img2img = true;
  r.init_images = std::move(images);
  r.mask = std::move(mask);
  // OpenAI's edits repaint the masked area entirely; `strength` (an extension) changes that, and
  // without a mask it is img2img's strength (default 0.75, as A1111's denoising_strength).
  if (!r.mask.empty()) r.denoising_strength = 1.0;
  if (j.contains("strength")) r.denoising_strength = number("strength", j["strength"], 0, 1);
  prepare_edit(r, l, "image", true);
  return r;
}

CallParams to_call_params(const GenerateRequest& r) {
  CallParams cp;
  cp.prompt = {r.prompt};
  if (!r.negative_prompt.empty()) cp.negative_prompt = {r.negative_prompt};
  cp.width = r.width;
  cp.height = r.height;
  cp.num_inference_steps = r.steps;
  cp.guidance_scale = float(r.guidance);
  cp.cfg_normalization = r.cfg_normalization;
  cp.cfg_truncation = r.cfg_truncation;
  cp.num_images_per_prompt = r.num_images;
  cp.max_sequence_length = r.max_sequence_length;
  for (uint64_t s : r.seeds) cp.generator.push_back(Generator{s, "cpu"});
  if (r.image) {  // the output takes the image's size
    cp.width.reset();
    cp.height.reset();
    cp.image = r.image;
    cp.mask_image = r.mask_image;
    cp.strength = r.denoising_strength;
  }
  return cp;
}

nlohmann::json request_json(const GenerateRequest& r) {
  json seeds = json::array();
  for (uint64_t s : r.seeds) seeds.push_back(s);
  return {{"prompt", r.prompt},
          {"negative_prompt", r.negative_prompt},
          {"width", r.width},
          {"height", r.height},
          {"steps", r.steps},
          {"guidance", r.guidance},
          {"cfg_normalization", r.cfg_normalization},
          {"cfg_truncation", r.cfg_truncation},
          {"n", r.num_images},
          {"seed", r.seeds.empty() ? json(nullptr) : json(r.seeds[0])},
          {"seeds", seeds}};
}

}  // namespace zimage::server
