// img2img and inpainting through the library API against diffusers' ZImageImg2ImgPipeline and
// ZImageInpaintPipeline runs (tests/fixtures/ref/<model>/edit_<case>.safetensors, inputs in
// tests/fixtures/edit; made by tools/reference/make_fixtures.py --only edit).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/safetensors.h"
#include "util/test_util.h"
#include "zimage/pipeline.h"

using namespace zimage;
using json = nlohmann::json;

namespace {

json edit_cases(const std::string& model) {
  std::ifstream f(test::fixture("ref/" + model + "/edit_cases.json"));
  return json::parse(f);
}

json edit_case(const std::string& model, const std::string& name) {
  for (auto& c : edit_cases(model))
    if (c["name"] == name) return c;
  return {};
}

CallParams edit_params(const json& c, const SafeTensorsFile& ref) {
  CallParams p;
  p.prompt = {c["prompt"].get<std::string>()};
  if (c.contains("negative_prompt")) p.negative_prompt = {c["negative_prompt"].get<std::string>()};
  p.num_inference_steps = c["num_inference_steps"].get<int>();
  p.guidance_scale = c["guidance_scale"].get<float>();
  if (c.contains("seeds"))
    for (auto& sd : c["seeds"]) p.generator.push_back({sd.get<uint64_t>(), "cpu"});
  else
    p.generator = {{c["seed"].get<uint64_t>(), "cpu"}};
  if (c.contains("num_images_per_prompt")) p.num_images_per_prompt = c["num_images_per_prompt"].get<int>();
  p.image = read_image(test::fixture("edit/" + c["image"].get<std::string>()));
  if (c.contains("mask")) p.mask_image = read_image(test::fixture("edit/" + c["mask"].get<std::string>()));
  p.strength = c["strength"].get<double>();
  if (c.contains("masked_image_latents_seed")) p.masked_image_latents = ref.get("masked_image_latents");
  return p;
}

struct Result {
  double rel_l2 = 0;
  int max_px = 0;
  int steps = 0;
};

Result run_case(ZImagePipeline& pipe, const std::string& model, const json& c) {
  SafeTensorsFile ref(test::fixture("ref/" + model + "/" + c["file"].get<std::string>()));
  CallParams p = edit_params(c, ref);
  Result r;
  p.callback_on_step_end = [&](ZImagePipeline&, int, float, Tensor&) { ++r.steps; };
  PipelineOutput out = pipe(p);
  Tensor ref_lat = ref.get("latents");
  EXPECT_EQ(out.latents.shape(), ref_lat.shape());
  if (out.latents.shape() != ref_lat.shape()) return r;
  r.rel_l2 = rel_l2(out.latents, ref_lat);
  const std::string img_file = c["file"].get<std::string>();
  SafeTensorsFile ref_img(
      test::fixture("ref/" + model + "/" + img_file.substr(0, img_file.size() - 12) + "_image.safetensors"));
  auto ref_px = ref_img.get("image_u8").to_vector();
  std::vector<uint8_t> px;
  for (auto& im : out.images) px.insert(px.end(), im.pixels.begin(), im.pixels.end());
  EXPECT_EQ(out.images.size(), size_t(p.num_images_per_prompt));
  if (px.size() != ref_px.size()) {
    ADD_FAILURE() << "image size";
    return r;
  }
  for (size_t i = 0; i < ref_px.size(); ++i) r.max_px = std::max(r.max_px, int(std::fabs(float(px[i]) - ref_px[i])));
  return r;
}

ZImagePipeline& fp32_pipe() {
  static ZImagePipeline p = [] {
    PretrainedOptions o;
    o.torch_dtype = "float32";
    return ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
  }();
  return p;
}

}  // namespace

class EditParityFp32 : public ::testing::TestWithParam<std::string> {};

TEST_P(EditParityFp32, LatentsAndImageMatchDiffusers) {
  json c = edit_case("tiny-fp32", GetParam());
  ASSERT_FALSE(c.is_null()) << GetParam();
  Result r = run_case(fp32_pipe(), "tiny-fp32", c);
  EXPECT_EQ(r.steps, c["steps_run"].get<int>()) << "only the steps strength keeps run";
  EXPECT_LE(r.rel_l2, 1e-5) << GetParam();
  EXPECT_LE(r.max_px, 1) << GetParam();
  std::printf("[fp32 %s] steps %d, latents rel L2 %.3g, max pixel diff %d\n", GetParam().c_str(), r.steps, r.rel_l2,
              r.max_px);
}

// low_memory releases the VAE between the encode and the decode: same result.
TEST(EditParityFp32LowMemory, SameLatentsAsTheSharedPipeline) {
  PretrainedOptions o;
  o.torch_dtype = "float32";
  o.low_memory = true;
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
  json c = edit_case("tiny-fp32", "inp_holes");
  SafeTensorsFile ref(test::fixture("ref/tiny-fp32/" + c["file"].get<std::string>()));
  PipelineOutput out = pipe(edit_params(c, ref));
  EXPECT_LE(rel_l2(out.latents, ref.get("latents")), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Cases, EditParityFp32,
                         ::testing::Values("i2i_s06", "i2i_s09_cfg", "i2i_nonsquare_jpg", "i2i_resize", "inp_holes",
                                           "inp_rgba", "inp_mil", "inp_resize", "i2i_batch_seeds", "inp_batch_seed"));

TEST(EditParityBf16, LatentsCloseToDiffusersBf16Run) {
  PretrainedOptions o;
  o.torch_dtype = "bfloat16";
  o.vae_dtype = "bfloat16";  // diffusers encodes and decodes in the VAE's dtype
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-bf16"), o);
  for (auto& c : edit_cases("tiny-bf16")) {
    Result r = run_case(pipe, "tiny-bf16", c);
    std::printf("[bf16 %s] steps %d, latents rel L2 %.3g, max pixel diff %d\n", c["name"].get<std::string>().c_str(),
                r.steps, r.rel_l2, r.max_px);
    EXPECT_EQ(r.steps, c["steps_run"].get<int>());
    EXPECT_LE(r.rel_l2, 2e-2) << c["name"];
  }
}

// Edit parameters are checked before anything runs; each message names the value.
TEST(EditApi, ValidationErrorsNameTheValue) {
  auto expect = [](const CallParams& p, const std::string& what) {
    try {
      validate_call_params(p);
      FAIL() << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  const Image img{48, 32, 3, std::vector<uint8_t>(48 * 32 * 3, 7)};
  CallParams p;
  p.prompt = {"x"};
  p.num_inference_steps = 4;
  p.strength = 0.5;
  expect(p, "[pipeline] strength is set but no image is given");
  p.image = img;
  p.strength = -0.1;
  expect(p, "[pipeline] The value of strength should be in [0.0, 1.0] but is -0.1");
  p.strength = std::nan("");
  expect(p, "[pipeline] The value of strength should be in [0.0, 1.0] but is nan");
  p.strength = 0.2;  // int(4 - 0.8) = 3: one step left
  EXPECT_NO_THROW(validate_call_params(p));
  p.strength = 0.0;
  expect(p, "the number of pipeline steps is 0 which is < 1");
  p.strength = std::nullopt;
  p.height = 48;
  expect(p, "the requested size 48x48 (width x height) differs from the init image's 48x32");
  p.height = std::nullopt;
  p.mask_image = Image{32, 48, 1, std::vector<uint8_t>(32 * 48)};
  expect(p, "[pipeline] mask image is 32x48 but the init image is 48x32");
  p.mask_image = std::nullopt;
  p.image = Image{40, 32, 3, std::vector<uint8_t>(40 * 32 * 3)};  // resized to 32x32 (multiples of 16)
  p.width = 40;
  expect(p,
         "[pipeline] the requested size 40x32 (width x height) differs from the init image's 40x32 (resized to 32x32)");
  p.width = std::nullopt;
  EXPECT_NO_THROW(validate_call_params(p));
  p.image = Image{15, 32, 3, std::vector<uint8_t>(15 * 32 * 3)};
  expect(p, "[pipeline] init image is 15x32: its sides must be at least 16 pixels");
  p.image = Image{48, 32, 3, std::vector<uint8_t>(5)};
  expect(p, "[pipeline] init image is not a valid image (48x32, 3 channels, 5 bytes)");
  p.image = std::nullopt;
  p.mask_image = img;
  expect(p, "[pipeline] mask_image is given without an image to inpaint");
}

// The mask keeps its region: with strength 1 the unmasked latents are the image's own sample.
TEST(EditApi, InpaintKeepsTheUnmaskedRegionOfTheImageLatents) {
  CallParams p;
  p.prompt = {"a photo of a cat"};
  p.num_inference_steps = 2;
  p.guidance_scale = 0;
  p.generator = {{3, "cpu"}};
  p.image = read_image(test::fixture("edit/rgb_48.png"));
  p.output_type = OutputType::Latent;
  Image black{48, 48, 1, std::vector<uint8_t>(48 * 48, 0)};
  p.mask_image = black;  // keep everything
  auto kept = fp32_pipe()(p);
  p.mask_image->pixels.assign(48 * 48, 255);  // repaint everything
  auto repainted = fp32_pipe()(p);
  p.mask_image->pixels.assign(48 * 48, 0);
  p.num_inference_steps = 3;
  auto kept3 = fp32_pipe()(p);
  // Keeping everything ends on the clean image latents whatever the steps; repainting does not.
  EXPECT_EQ(kept.latents.to_vector(), kept3.latents.to_vector());
  EXPECT_GT(rel_l2(kept.latents, repainted.latents), 1e-3);
}
