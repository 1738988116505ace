// ControlNet and ControlNet inpainting through the library API against diffusers'
// ZImageControlNetPipeline and ZImageControlNetInpaintPipeline runs (tests/fixtures/ref/<model>/
// controlnet_<case>.safetensors; ControlNets in tests/fixtures/controlnet/<model>/; made by
// tools/reference/make_fixtures.py --only controlnet).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/safetensors.h"
#include "transformer/controlnet_z_image.h"
#include "util/single_files.h"
#include "util/test_util.h"
#include "zimage/pipeline.h"

using namespace zimage;
using json = nlohmann::json;

namespace {

json cn_cases(const std::string& model) {
  std::ifstream f(test::fixture("ref/" + model + "/controlnet_cases.json"));
  return json::parse(f);
}

json cn_case(const std::string& model, const std::string& name) {
  for (auto& c : cn_cases(model))
    if (c["name"] == name) return c;
  return {};
}

CallParams cn_params(const json& c) {
  CallParams p;
  p.prompt = {c["prompt"].get<std::string>()};
  if (c.contains("negative_prompt")) p.negative_prompt = {c["negative_prompt"].get<std::string>()};
  p.num_inference_steps = c["num_inference_steps"].get<int>();
  p.guidance_scale = c["guidance_scale"].get<float>();
  p.generator = {{c["seed"].get<uint64_t>(), "cpu"}};
  if (c.contains("num_images_per_prompt")) p.num_images_per_prompt = c["num_images_per_prompt"].get<int>();
  p.height = c["height"].get<int>();
  p.width = c["width"].get<int>();
  p.control_image = read_image(test::fixture("controlnet/" + c["control"].get<std::string>()));
  p.controlnet_conditioning_scale = c["scale"].get<double>();
  if (c.contains("image")) p.image = read_image(test::fixture("edit/" + c["image"].get<std::string>()));
  if (c.contains("mask")) p.mask_image = read_image(test::fixture("edit/" + c["mask"].get<std::string>()));
  return p;
}

struct Result {
  double rel_l2 = 1;
  int max_px = 255;
};

Result compare(const PipelineOutput& out, const std::string& model, const json& c) {
  Result r;
  SafeTensorsFile ref(test::fixture("ref/" + model + "/" + c["file"].get<std::string>()));
  Tensor ref_lat = ref.get("latents");
  EXPECT_EQ(out.latents.shape(), ref_lat.shape());
  if (out.latents.shape() != ref_lat.shape()) return r;
  r.rel_l2 = rel_l2(out.latents, ref_lat);
  SafeTensorsFile ref_img(
      test::fixture("ref/" + model + "/controlnet_" + c["name"].get<std::string>() + "_image.safetensors"));
  auto ref_px = ref_img.get("image_u8").to_vector();
  std::vector<uint8_t> px;
  for (auto& im : out.images) px.insert(px.end(), im.pixels.begin(), im.pixels.end());
  if (px.size() != ref_px.size()) {
    ADD_FAILURE() << "image size " << px.size() << " vs " << ref_px.size();
    return r;
  }
  r.max_px = 0;
  for (size_t i = 0; i < ref_px.size(); ++i) r.max_px = std::max(r.max_px, int(std::fabs(float(px[i]) - ref_px[i])));
  return r;
}

// One base pipeline per model; the ControlNet of each case is attached to it (load_controlnet).
ZImagePipeline& pipe_for(const std::string& model) {
  static std::map<std::string, ZImagePipeline> pipes;
  auto it = pipes.find(model);
  if (it == pipes.end()) {
    PretrainedOptions o;
    o.torch_dtype = model == "tiny-fp32" ? "float32" : "bfloat16";
    o.vae_dtype = o.torch_dtype;  // diffusers encodes and decodes in the VAE's dtype
    it = pipes.emplace(model, ZImagePipeline::from_pretrained(test::fixture("models/" + model), o)).first;
  }
  return it->second;
}

Result run_case(const std::string& model, const json& c) {
  ZImagePipeline& pipe = pipe_for(model);
  pipe.load_controlnet(test::fixture(c["controlnet"].get<std::string>()));
  return compare(pipe(cn_params(c)), model, c);
}

}  // namespace

class ControlNetParityFp32 : public ::testing::TestWithParam<std::string> {};

TEST_P(ControlNetParityFp32, LatentsAndImageMatchDiffusers) {
  json c = cn_case("tiny-fp32", GetParam());
  ASSERT_FALSE(c.is_null()) << GetParam();
  Result r = run_case("tiny-fp32", c);
  EXPECT_LE(r.rel_l2, 1e-5) << GetParam();
  EXPECT_LE(r.max_px, 1) << GetParam();
  std::printf("[fp32 %s] latents rel L2 %.3g, max pixel diff %d\n", GetParam().c_str(), r.rel_l2, r.max_px);
}

INSTANTIATE_TEST_SUITE_P(Cases, ControlNetParityFp32,
                         ::testing::Values("plain_s075", "plain_s15_cfg", "plain_resize", "plain_batch", "layers_s075",
                                           "layers_s04", "refiner_s075", "refiner_s13_cfg", "inpaint_holes",
                                           "inpaint_rgba_cfg"));

// PretrainedOptions::controlnet attaches at load; low_memory loads the ControlNet with the
// transformer per call and releases the VAE between the control encodes and the decode: same result.
TEST(ControlNetParityFp32LowMemory, SameLatentsAsTheSharedPipeline) {
  json c = cn_case("tiny-fp32", "inpaint_holes");
  PretrainedOptions o;
  o.torch_dtype = o.vae_dtype = "float32";
  o.low_memory = true;
  o.controlnet = test::fixture(c["controlnet"].get<std::string>());
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
  EXPECT_TRUE(pipe.has_controlnet());
  Result r = compare(pipe(cn_params(c)), "tiny-fp32", c);
  EXPECT_LE(r.rel_l2, 1e-5);
  EXPECT_LE(r.max_px, 1);
}

TEST(ControlNetParityBf16, LatentsCloseToDiffusersBf16Run) {
  for (auto& c : cn_cases("tiny-bf16")) {
    Result r = run_case("tiny-bf16", c);
    std::printf("[bf16 %s] latents rel L2 %.3g, max pixel diff %d\n", c["name"].get<std::string>().c_str(), r.rel_l2,
                r.max_px);
    EXPECT_LE(r.rel_l2, 2e-2) << c["name"];
  }
}

// ControlNet parameters are checked before anything runs; each message names the value.
TEST(ControlNetApi, ValidationErrorsNameTheValue) {
  auto expect = [](const CallParams& p, const std::string& what) {
    try {
      validate_call_params(p);
      FAIL() << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  const Image img{40, 24, 3, std::vector<uint8_t>(40 * 24 * 3, 7)};
  CallParams p;
  p.prompt = {"x"};
  p.height = p.width = 32;
  p.controlnet_conditioning_scale = 0.5;
  expect(p, "[pipeline] controlnet_conditioning_scale is set but no control_image is given");
  p.control_image = img;
  EXPECT_NO_THROW(validate_call_params(p));
  p.controlnet_conditioning_scale = std::nan("");
  expect(p, "[pipeline] controlnet_conditioning_scale must be a finite number in [-1000, 1000], got nan");
  p.controlnet_conditioning_scale = std::nullopt;
  p.control_image = Image{40, 24, 3, std::vector<uint8_t>(7)};
  expect(p, "[pipeline] control image is not a valid image (40x24, 3 channels, 7 bytes)");
  p.control_image = img;
  p.image = img;
  expect(p, "[pipeline] control_image with an init image but no mask_image");
  p.mask_image = Image{8, 8, 1, std::vector<uint8_t>(64)};  // any size: each input is resized to the output
  EXPECT_NO_THROW(validate_call_params(p));
  p.strength = 0.5;
  expect(p, "[pipeline] strength is not a parameter of the ControlNet pipelines");
  p.strength = std::nullopt;
  p.masked_image_latents = Tensor::zeros(DType::F32, {1, 16, 4, 4});
  expect(p, "[pipeline] masked_image_latents is not a parameter of the ControlNet inpainting pipeline");
  p.masked_image_latents = std::nullopt;
  p.height = 40;
  expect(p, "[pipeline] height must be divisible by 16 (got 40)");
}

TEST(ControlNetApi, ControlImageWithoutAControlNetIsAnError) {
  PretrainedOptions o;
  o.torch_dtype = "float32";
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
  EXPECT_FALSE(pipe.has_controlnet());
  CallParams p;
  p.prompt = {"x"};
  p.height = p.width = 32;
  p.num_inference_steps = 1;
  p.control_image = read_image(test::fixture("controlnet/ctrl_32.png"));
  try {
    pipe(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[pipeline] control_image is given but no ControlNet is attached"),
              std::string::npos)
        << e.what();
  }
  pipe.load_controlnet(test::fixture("controlnet/tiny-fp32/cn_plain"));
  EXPECT_TRUE(pipe.has_controlnet());
  p.generator = {{1, "cpu"}};
  Tensor with = pipe(p).latents;
  p.controlnet_conditioning_scale = 0.0;  // zero hints: the text-to-image result
  Tensor zero = pipe(p).latents;
  pipe.remove_controlnet();
  p.control_image = std::nullopt;
  p.controlnet_conditioning_scale = std::nullopt;
  Tensor plain = pipe(p).latents;
  EXPECT_EQ(zero.to_vector(), plain.to_vector());
  EXPECT_GT(rel_l2(with, plain), 1e-3);
}

// Configs: a ControlNet that does not fit the transformer is an error naming the field, before any
// weight is read (the weights here are a copy of a good ControlNet's; only config.json changes).
TEST(ControlNetApi, ConfigErrorsNameTheField) {
  const std::string dir = test::temp_dir("cncfg");
  const std::string src = test::fixture("controlnet/tiny-fp32/cn_layers");
  std::filesystem::copy_file(src + "/diffusion_pytorch_model.safetensors",
                             dir + "/diffusion_pytorch_model.safetensors");
  std::ifstream f(src + "/config.json");
  const json good = json::parse(f);
  PretrainedOptions o;
  o.torch_dtype = "float32";
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
  auto expect = [&](const std::function<void(json&)>& edit, const std::string& what) {
    json j = good;
    edit(j);
    std::ofstream(dir + "/config.json") << j.dump();
    try {
      pipe.load_controlnet(dir);
      ADD_FAILURE() << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect([](json& j) { j["dim"] = 96; }, "does not match the transformer: dim 96 != the transformer's dim 72");
  expect([](json& j) { j["n_heads"] = 2; }, "n_heads 2 != the transformer's n_heads 3");
  expect(
      [](json& j) {
        j["control_layers_places"] = {0, 3};
      },
      "control_layers_places [0, 3] names layer 3 but the transformer has 3 layers");
  expect([](json& j) { j["control_layers_places"] = {2, 0}; }, "control_layers_places [2, 0] must start with 0");
  expect(
      [](json& j) {
        j["control_refiner_layers_places"] = {0, 2};
      },
      "control_refiner_layers_places [0, 2] names noise_refiner layer 2 but the transformer has 2");
  expect(
      [](json& j) {
        j["control_refiner_layers_places"] = {0, 1, 2};
      },
      "control_refiner_layers_places [0, 1, 2] has more entries than the 2 hints");
  expect([](json& j) { j["control_in_dim"] = 8; }, "control_in_dim 8 is below the transformer's in_channels 16");
  expect([](json& j) { j["add_control_noise_refiner"] = "both"; }, "add_control_noise_refiner");
  expect([](json& j) { j["all_patch_size"] = {4}; }, "no control_all_x_embedder for the transformer's patch size 2-1");
  expect([](json& j) { j["_class_name"] = "ZImageTransformer2DModel"; }, "expected 'ZImageControlNetModel'");
  expect([](json& j) { j["add_control_noise_refiner"] = nullptr; },  // then it expects control_noise_refiner weights
         "control_noise_refiner.0.");
  EXPECT_FALSE(pipe.has_controlnet());
  std::filesystem::remove_all(dir);
}

// A ControlNet as one .safetensors file (the form alibaba-pai publishes; config inferred from its
// tensors for the transformer) gives the folder's images bit for bit, in each variant: the
// "control_layers" one written as Union 2.0 files are (a zeroed control_noise_refiner, dropped).
TEST(ControlNetSingleFile, SameImagesAsTheFolder) {
  const std::string dir = test::temp_dir("cnfile");
  ZImagePipeline& pipe = pipe_for("tiny-fp32");
  const ZImageTransformerConfig t =
      ZImageTransformerConfig::load(test::fixture("models/tiny-fp32/transformer/config.json"));
  const std::string nets = test::fixture("controlnet/tiny-fp32/");
  const std::map<std::string, std::string> file_of = {
      {"cn_plain", nets + "cn_plain/diffusion_pytorch_model.safetensors"},
      {"cn_refiner", nets + "cn_refiner/diffusion_pytorch_model.safetensors"},
      {"cn_layers", test::write_controlnet_file("tiny-fp32", "cn_layers", dir + "/union20.safetensors",
                                                test::control_refiner_tensors(t, 2, true, true, 8000))}};
  for (const char* name : {"plain_s075", "layers_s075", "refiner_s075", "inpaint_holes"}) {
    const json c = cn_case("tiny-fp32", name);
    ASSERT_FALSE(c.is_null()) << name;
    const std::string folder = test::fixture(c["controlnet"].get<std::string>());
    pipe.load_controlnet(folder);
    const PipelineOutput a = pipe(cn_params(c));
    pipe.load_controlnet(file_of.at(std::filesystem::path(folder).filename().string()));
    const PipelineOutput b = pipe(cn_params(c));
    ASSERT_EQ(a.latents.shape(), b.latents.shape()) << name;
    EXPECT_EQ(a.latents.to_vector(), b.latents.to_vector()) << name;
    ASSERT_EQ(a.images.size(), b.images.size()) << name;
    for (size_t i = 0; i < a.images.size(); ++i) EXPECT_EQ(a.images[i].pixels, b.images[i].pixels) << name;
  }
  // PretrainedOptions::controlnet with a file, loaded per call (low_memory): the same latents.
  const json c = cn_case("tiny-fp32", "layers_s04");
  PretrainedOptions o;
  o.torch_dtype = o.vae_dtype = "float32";
  o.low_memory = true;
  o.controlnet = file_of.at("cn_layers");
  auto low_file = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
  o.controlnet = nets + "cn_layers";
  auto low_folder = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
  EXPECT_EQ(low_file(cn_params(c)).latents.to_vector(), low_folder(cn_params(c)).latents.to_vector());
  std::filesystem::remove_all(dir);
}
