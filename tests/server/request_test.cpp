// Request parsing and validation of `zimage serve` (src/server/request.cpp): every bad field is a
// RequestError 400 that names the field.
#include <gtest/gtest.h>

#include "server/params.h"
#include "server/request.h"

using namespace zimage;
using namespace zimage::server;

namespace {

Defaults D() {
  Defaults d;
  d.width = 64;
  d.height = 64;
  d.steps = 2;
  return d;
}
Limits L() { return Limits{256, 10, 4}; }

// The field a request is refused for (status 400), or "<accepted>".
template <class F>
std::string refused_field(F&& f, int* status = nullptr, std::string* message = nullptr) {
  try {
    f();
  } catch (const RequestError& e) {
    if (status) *status = e.status();
    if (message) *message = e.what();
    return e.field().empty() ? "<none>" : e.field();
  }
  return "<accepted>";
}
std::string openai_field(const std::string& body) {
  return refused_field([&] { parse_openai_generation(body, D(), L()); });
}
std::string job_field(const std::string& body) {
  return refused_field([&] { parse_job(body, D(), L()); });
}
std::string sdapi_field(const std::string& body) {
  return refused_field([&] { parse_sdapi_txt2img(body, D(), L()); });
}

}  // namespace

TEST(ServerRequest, OpenAIDefaultsAndOverrides) {
  GenerateRequest r = parse_openai_generation(R"({"prompt":"a cat"})", D(), L());
  EXPECT_EQ(r.prompt, "a cat");
  EXPECT_EQ(r.width, 64);
  EXPECT_EQ(r.height, 64);
  EXPECT_EQ(r.steps, 2);
  EXPECT_EQ(r.num_images, 1);
  EXPECT_EQ(r.response_format, "b64_json");
  ASSERT_EQ(r.seeds.size(), 1u);  // a random seed, drawn now and recorded
  r = parse_openai_generation(
      R"({"prompt":"x","n":3,"size":"128x96","response_format":"url","model":"dall-e-3","seed":42,"steps":5,"guidance":1.5,
          "negative_prompt":"blur","quality":"hd","style":"vivid","user":"u"})",
      D(), L());
  EXPECT_EQ(r.num_images, 3);
  EXPECT_EQ(r.width, 128);
  EXPECT_EQ(r.height, 96);
  EXPECT_EQ(r.response_format, "url");
  EXPECT_EQ(r.seeds, std::vector<uint64_t>{42});
  EXPECT_EQ(r.steps, 5);
  EXPECT_DOUBLE_EQ(r.guidance, 1.5);
  EXPECT_EQ(r.negative_prompt, "blur");
  CallParams cp = to_call_params(r);
  EXPECT_EQ(cp.num_images_per_prompt, 3);
  ASSERT_EQ(cp.generator.size(), 1u);  // one generator draws the batch, as `generate --seed 42 --num-images 3`
  EXPECT_EQ(cp.generator[0].seed, 42u);
  EXPECT_EQ(parse_openai_generation(R"({"prompt":"x","seed":18446744073709551615})", D(), L()).seeds[0],
            18446744073709551615ull);
  EXPECT_EQ(parse_openai_generation(R"({"prompt":"x","size":"auto"})", D(), L()).width, 64);
}

TEST(ServerRequest, OpenAIBadFieldsAreNamed) {
  EXPECT_EQ(openai_field(R"({})"), "prompt");
  EXPECT_EQ(openai_field(R"({"prompt":5})"), "prompt");
  EXPECT_EQ(openai_field(R"({"prompt":"a\u0000b"})"), "prompt");
  EXPECT_EQ(openai_field("{\"prompt\":\"\xff\"}"), "<none>");  // not even JSON (invalid UTF-8 in the body)
  EXPECT_EQ(openai_field(R"({"prompt":"x","negative_prompt":"a\u0000"})"), "negative_prompt");
  EXPECT_EQ(openai_field(R"({"prompt":"x","n":0})"), "n");
  EXPECT_EQ(openai_field(R"({"prompt":"x","n":5})"), "n");  // --max-images 4
  EXPECT_EQ(openai_field(R"({"prompt":"x","n":1.5})"), "n");
  EXPECT_EQ(openai_field(R"({"prompt":"x","n":"2"})"), "n");
  EXPECT_EQ(openai_field(R"({"prompt":"x","size":"64"})"), "size");
  EXPECT_EQ(openai_field(R"({"prompt":"x","size":"64x-64"})"), "size");
  EXPECT_EQ(openai_field(R"({"prompt":"x","size":"100x64"})"), "size");   // not a multiple of 16
  EXPECT_EQ(openai_field(R"({"prompt":"x","size":"512x512"})"), "size");  // --max-size 256
  EXPECT_EQ(openai_field(R"({"prompt":"x","size":" 64x64"})"), "size");
  EXPECT_EQ(openai_field(R"({"prompt":"x","response_format":"png"})"), "response_format");
  EXPECT_EQ(openai_field(R"({"prompt":"x","steps":0})"), "steps");
  EXPECT_EQ(openai_field(R"({"prompt":"x","steps":11})"), "steps");  // --max-steps 10
  EXPECT_EQ(openai_field(R"({"prompt":"x","num_inference_steps":11})"), "num_inference_steps");
  EXPECT_EQ(openai_field(R"({"prompt":"x","guidance":-1})"), "guidance");
  EXPECT_EQ(openai_field(R"({"prompt":"x","guidance":"high"})"), "guidance");
  EXPECT_EQ(openai_field(R"({"prompt":"x","seed":-2})"), "seed");
  EXPECT_EQ(openai_field(R"({"prompt":"x","seed":1.5})"), "seed");
  EXPECT_EQ(openai_field(R"({"prompt":"x","seed":"42"})"), "seed");
  EXPECT_EQ(openai_field(R"({"prompt":"x","seed":1e300})"), "seed");
  EXPECT_EQ(openai_field(R"({"prompt":"x","model":7})"), "model");
  EXPECT_EQ(openai_field(R"({"prompt":"x","cfg_normalization":1})"), "cfg_normalization");
  EXPECT_EQ(openai_field(R"({"prompt":"x","n":1,"steps":3,"seed":-1,"guidance":0})"), "<accepted>");
  EXPECT_EQ(openai_field(R"({"prompt":")" + std::string(65537, 'a') + R"("})"), "prompt");
  EXPECT_EQ(openai_field(R"({"prompt":"x","negative_prompt":")" + std::string(65537, 'a') + R"("})"),
            "negative_prompt");
  EXPECT_EQ(openai_field(R"({"prompt":")" + std::string(65536, 'a') + R"("})"), "<accepted>");
  std::string msg;
  int status = 0;
  refused_field([&] { parse_openai_generation(R"({"prompt":"x","steps":11})", D(), L()); }, &status, &msg);
  EXPECT_EQ(status, 400);
  EXPECT_EQ(msg, "[serve] 'steps' is 11, expected an integer in [1, 10] (--max-steps)");
}

TEST(ServerRequest, BodyMustBeAJsonObject) {
  EXPECT_EQ(openai_field(""), "<none>");
  EXPECT_EQ(openai_field("not json"), "<none>");
  EXPECT_EQ(openai_field("[1,2]"), "<none>");
  EXPECT_EQ(openai_field("\"prompt\""), "<none>");
  EXPECT_EQ(openai_field(std::string(100000, '[')), "<none>");  // nesting is bounded, no stack overflow
  std::string msg;
  refused_field([&] { parse_openai_generation("[1]", D(), L()); }, nullptr, &msg);
  EXPECT_EQ(msg.rfind("[serve] ", 0), 0u) << msg;
}

TEST(ServerRequest, JobsTakeWidthAndHeight) {
  GenerateRequest r = parse_job(R"({"prompt":"x","width":96,"height":32})", D(), L());
  EXPECT_EQ(r.width, 96);
  EXPECT_EQ(r.height, 32);
  EXPECT_EQ(job_field(R"({"prompt":"x","width":100})"), "width");
  EXPECT_EQ(job_field(R"({"prompt":"x","height":0})"), "height");
  EXPECT_EQ(job_field(R"({"prompt":"x","height":272})"), "height");
  // OpenAI's route does not know width/height: ignored like any unknown field.
  EXPECT_EQ(openai_field(R"({"prompt":"x","width":100})"), "<accepted>");
}

TEST(ServerRequest, SdapiTxt2img) {
  GenerateRequest r = parse_sdapi_txt2img(
      R"({"prompt":"p","negative_prompt":"n","steps":3,"cfg_scale":2.5,"width":32,"height":48,"seed":7,"batch_size":2,"n_iter":2,
          "sampler_name":"Euler a","restore_faces":false})",
      D(), L());
  EXPECT_EQ(r.steps, 3);
  EXPECT_DOUBLE_EQ(r.guidance, 2.5);
  EXPECT_EQ(r.width, 32);
  EXPECT_EQ(r.height, 48);
  EXPECT_EQ(r.num_images, 4);
  EXPECT_EQ(r.seeds, (std::vector<uint64_t>{7, 8, 9, 10}));  // A1111: seed + image index, one generator each
  EXPECT_EQ(to_call_params(r).generator.size(), 4u);
  EXPECT_EQ(parse_sdapi_txt2img("{}", D(), L()).prompt, "");  // A1111's defaults
  EXPECT_EQ(sdapi_field(R"({"steps":"3"})"), "steps");
  EXPECT_EQ(sdapi_field(R"({"cfg_scale":-1})"), "cfg_scale");
  EXPECT_EQ(sdapi_field(R"({"width":8})"), "width");
  EXPECT_EQ(sdapi_field(R"({"height":50})"), "height");
  EXPECT_EQ(sdapi_field(R"({"seed":-5})"), "seed");
  EXPECT_EQ(sdapi_field(R"({"batch_size":0})"), "batch_size");
  EXPECT_EQ(sdapi_field(R"({"batch_size":3,"n_iter":2})"), "n_iter");  // 6 images > --max-images 4
  EXPECT_EQ(sdapi_field(R"({"prompt":["a"]})"), "prompt");
}

namespace {
// A real PNG of w x h pixels with `channels` channels; pixel values from `f(x, y, c)`.
template <class F>
std::string png_bytes(int w, int h, int channels, F f) {
  Image img;
  img.width = w;
  img.height = h;
  img.channels = channels;
  img.pixels.resize(size_t(w) * h * channels);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c) img.pixels[(size_t(y) * w + x) * channels + c] = uint8_t(f(x, y, c));
  std::vector<uint8_t> b = encode_png(img);
  return std::string(b.begin(), b.end());
}
}  // namespace

TEST(ServerRequest, Img2imgFieldsAreValidated) {
  const std::string png_raw = png_bytes(40, 36, 3, [](int x, int y, int c) { return x * 5 + y * 3 + c; });
  const std::string png = base64_encode(png_raw.data(), png_raw.size());
  const std::string broken = base64_encode("\x89PNG\r\n\x1a\nrest", 12);  // a PNG signature, then nothing
  const std::string small_raw = png_bytes(24, 24, 3, [](int, int, int) { return 7; });
  const std::string small = base64_encode(small_raw.data(), small_raw.size());
  auto img2img = [&](const std::string& body) { return refused_field([&] { parse_sdapi_img2img(body, D(), L()); }); };
  EXPECT_EQ(img2img(R"({"prompt":"x"})"), "init_images");
  EXPECT_EQ(img2img(R"({"init_images":[]})"), "init_images");
  EXPECT_EQ(img2img(R"({"init_images":"abc"})"), "init_images");
  EXPECT_EQ(img2img(R"({"init_images":["@@@"]})"), "init_images[0]");
  EXPECT_EQ(img2img(R"({"init_images":[")" + base64_encode("GIF89a", 6) + R"("]})"), "init_images[0]");
  EXPECT_EQ(img2img(R"({"init_images":[")" + broken + R"("]})"), "init_images[0]");             // not decodable
  EXPECT_EQ(img2img(R"({"init_images":[")" + png + R"(",")" + png + R"("]})"), "init_images");  // one per request
  EXPECT_EQ(img2img(R"({"init_images":[")" + png + R"("],"denoising_strength":1.5})"), "denoising_strength");
  EXPECT_EQ(img2img(R"({"init_images":[")" + png + R"("],"mask":"!!"})"), "mask");
  EXPECT_EQ(img2img(R"({"init_images":[")" + png + R"("],"mask":")" + small + R"("})"), "mask");  // size differs
  EXPECT_EQ(img2img(R"({"init_images":[")" + png + R"("],"steps":0})"), "steps");
  // A strength that leaves no step is the pipeline's error, before anything is queued.
  std::string msg;
  EXPECT_EQ(refused_field(
                [&] {
                  parse_sdapi_img2img(R"({"init_images":[")" + png + R"("],"steps":2,"denoising_strength":0})", D(),
                                      L());
                },
                nullptr, &msg),
            "<none>");
  EXPECT_NE(msg.find("strength"), std::string::npos) << msg;
  GenerateRequest r = parse_sdapi_img2img(
      R"({"init_images":["data:image/png;base64,)" + png + R"("],"denoising_strength":0.5})", D(), L());
  EXPECT_TRUE(r.img2img);
  ASSERT_EQ(r.init_images.size(), 1u);
  EXPECT_EQ(r.init_images[0], png_raw);
  ASSERT_TRUE(r.image.has_value());
  EXPECT_EQ(r.image->width, 40);
  EXPECT_EQ(r.width, 32);  // the output: the image's sides rounded down to multiples of 16
  EXPECT_EQ(r.height, 32);
  EXPECT_DOUBLE_EQ(r.denoising_strength, 0.5);
  CallParams cp = to_call_params(r);
  EXPECT_TRUE(cp.image.has_value());
  EXPECT_FALSE(cp.width.has_value());
  EXPECT_DOUBLE_EQ(cp.strength.value_or(-1), 0.5);
}

TEST(ServerRequest, OpenAIEditsFormFields) {
  const std::string png = png_bytes(32, 32, 3, [](int x, int y, int c) { return x + y + c; });
  // OpenAI's mask: fully transparent = edit. Left half transparent.
  const std::string mask = png_bytes(32, 32, 4, [](int x, int, int c) { return c == 3 ? (x < 16 ? 0 : 255) : 0; });
  auto edit = [&](std::vector<FormField> f) { return refused_field([&] { parse_openai_edit(f, D(), L()); }); };
  EXPECT_EQ(edit({{"prompt", "", "", "x"}}), "image");
  EXPECT_EQ(edit({{"image", "a.gif", "image/gif", "GIF89a"}, {"prompt", "", "", "x"}}), "image");
  EXPECT_EQ(edit({{"image", "a.png", "image/png", std::string("\x89PNG\r\n\x1a\nxx", 10)}, {"prompt", "", "", "x"}}),
            "image");
  EXPECT_EQ(edit({{"image", "a.png", "image/png", png}, {"mask", "m.png", "", "nope"}, {"prompt", "", "", "x"}}),
            "mask");
  EXPECT_EQ(edit({{"image", "a.png", "image/png", png}, {"prompt", "", "", "x"}, {"n", "", "", "two"}}), "n");
  EXPECT_EQ(edit({{"image", "a.png", "image/png", png}, {"prompt", "", "", "x"}, {"n", "", "", "[[[[1]]]]"}}), "n");
  EXPECT_EQ(edit({{"image", "a.png", "image/png", png}, {"prompt", "", "", "x"}, {"size", "", "", "7x7"}}), "size");
  EXPECT_EQ(edit({{"image", "a.png", "image/png", png}, {"prompt", "", "", "x"}, {"strength", "", "", "1.5"}}),
            "strength");
  EXPECT_EQ(edit({{"image", "a.png", "image/png", png}}), "prompt");
  GenerateRequest r = parse_openai_edit({{"image", "a.png", "image/png", png},
                                         {"mask", "m.png", "image/png", mask},
                                         {"prompt", "", "", "x"},
                                         {"n", "", "", "2"}},
                                        D(), L());
  EXPECT_TRUE(r.img2img);
  EXPECT_EQ(r.num_images, 2);
  EXPECT_EQ(r.mask, mask);
  EXPECT_DOUBLE_EQ(r.denoising_strength, 1.0);  // inpainting repaints the masked area entirely
  ASSERT_TRUE(r.mask_image.has_value());
  ASSERT_EQ(r.mask_image->channels, 1);
  EXPECT_EQ(r.mask_image->pixels[0], 255);  // transparent: repaint
  EXPECT_EQ(r.mask_image->pixels[20], 0);   // opaque: keep
  GenerateRequest r2 = parse_openai_edit(
      {{"image", "a.png", "image/png", png}, {"prompt", "", "", "x"}, {"strength", "", "", "0.5"}}, D(), L());
  EXPECT_FALSE(r2.mask_image.has_value());
  EXPECT_DOUBLE_EQ(r2.denoising_strength, 0.5);
}

TEST(ServerRequest, Base64) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    std::string e = base64_encode(s.data(), s.size());
    if (s.empty()) continue;
    EXPECT_EQ(base64_decode(e, "f"), s);
  }
  EXPECT_EQ(base64_encode("Man", 3), "TWFu");
  EXPECT_EQ(base64_decode("TWE", "f"), "Ma");  // padding optional
  EXPECT_THROW(base64_decode("TW FU", "f"), RequestError);
  EXPECT_THROW(base64_decode("T", "f"), RequestError);
}

// The CLI and the server share these checks (src/server/params.cpp); the CLI's texts are unchanged.
TEST(ServerParams, SharedWithTheCli) {
  EXPECT_EQ(params::parse_seed("42", "--seed", "[generate] "), 42u);
  EXPECT_EQ(params::parse_seed("-1", "--seed", "[generate] "), std::nullopt);
  try {
    params::parse_seed("4x", "--seed", "[generate] ");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(
        e.what(),
        "[generate] --seed '4x' is not a seed: give an integer in [0, 18446744073709551615], or -1 for a random seed");
  }
  try {
    params::check_prompt_text({std::string("a\0b", 3)}, "prompt", "[generate] ");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[generate] prompt contains a NUL character (at byte 1), which PNG text cannot hold");
  }
  EXPECT_LT(params::random_seed(), 1ull << 63);
}
