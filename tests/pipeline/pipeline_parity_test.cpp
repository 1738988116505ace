// Whole generations through the library API against diffusers' ZImagePipeline runs
// (tests/fixtures/ref/<model>/pipeline_<case>.safetensors, made by tools/reference).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "util/test_util.h"
#include "zimage/pipeline.h"

using namespace zimage;
using json = nlohmann::json;

namespace {

std::vector<std::string> as_list(const json& v) {
  if (v.is_null()) return {};
  if (v.is_string()) return {v.get<std::string>()};
  return v.get<std::vector<std::string>>();
}

CallParams params_from_case(const json& c) {
  CallParams p;
  p.prompt = as_list(c["prompt"]);
  p.negative_prompt = as_list(c["negative_prompt"]);
  p.height = c["height"].get<int>();
  p.width = c["width"].get<int>();
  p.num_inference_steps = c["num_inference_steps"].get<int>();
  p.guidance_scale = c["guidance_scale"].get<float>();
  p.cfg_normalization = c["cfg_normalization"].get<bool>();
  p.cfg_truncation = c["cfg_truncation"].get<double>();
  p.num_images_per_prompt = c["num_images_per_prompt"].get<int>();
  p.max_sequence_length = c["max_sequence_length"].get<int>();
  if (c.contains("seeds"))
    for (auto s : c["seeds"]) p.generator.push_back({s.get<uint64_t>(), "cpu"});
  else
    p.generator.push_back({c["seed"].get<uint64_t>(), "cpu"});
  return p;
}

json cases(const std::string& model) {
  std::ifstream f(test::fixture("ref/" + model + "/pipeline_cases.json"));
  return json::parse(f);
}

// Fraction of pixel values within ±1 of the reference.
double frac_within_1(const std::vector<Image>& imgs, const Tensor& ref_u8) {
  auto ref = ref_u8.to_vector();
  size_t n = 0, ok = 0;
  for (auto& im : imgs)
    for (uint8_t v : im.pixels) {
      ok += std::fabs(float(v) - ref[n]) <= 1.f;
      ++n;
    }
  EXPECT_EQ(n, ref.size());
  return double(ok) / double(std::max<size_t>(n, 1));
}

}  // namespace

class PipelineParityFp32 : public ::testing::TestWithParam<std::string> {
 protected:
  static ZImagePipeline& pipe() {
    static ZImagePipeline p = [] {
      PretrainedOptions o;
      o.torch_dtype = "float32";
      return ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
    }();
    return p;
  }
};

TEST_P(PipelineParityFp32, LatentsAndImageMatchDiffusers) {
  json c;
  for (auto& e : cases("tiny-fp32"))
    if (e["name"] == GetParam()) c = e;
  ASSERT_FALSE(c.is_null()) << GetParam();
  SafeTensorsFile ref(test::fixture("ref/tiny-fp32/" + c["file"].get<std::string>()));
  PipelineOutput out = pipe()(params_from_case(c));
  Tensor ref_lat = ref.get("latents");
  ASSERT_EQ(out.latents.shape(), ref_lat.shape());
  double err = rel_l2(out.latents, ref_lat);
  EXPECT_LE(err, 1e-4) << GetParam();
  double frac = frac_within_1(out.images, ref.get("image_u8"));
  EXPECT_GE(frac, 0.999) << GetParam();
  RecordProperty("latents_rel_l2", std::to_string(err));
  std::printf("[%s] latents rel L2 %.3g, pixels within ±1: %.5f\n", GetParam().c_str(), err, frac);
}

INSTANTIATE_TEST_SUITE_P(Cases, PipelineParityFp32,
                         ::testing::Values("basic", "cfg", "cfg_trunc", "cfg_norm", "multi", "plist", "nonsquare",
                                           "seedlist"));

TEST(PipelineParityBf16, LatentsCloseToDiffusersBf16Run) {
  PretrainedOptions o;
  o.torch_dtype = "bfloat16";
  o.vae_dtype = "bfloat16";  // diffusers' ZImagePipeline decodes in the VAE's dtype
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-bf16"), o);
  for (auto& c : cases("tiny-bf16")) {
    SafeTensorsFile ref(test::fixture("ref/tiny-bf16/" + c["file"].get<std::string>()));
    PipelineOutput out = pipe(params_from_case(c));
    double err = rel_l2(out.latents, ref.get("latents"));
    double frac = frac_within_1(out.images, ref.get("image_u8"));
    std::printf("[bf16 %s] latents rel L2 %.3g, pixels within ±1: %.5f\n", c["name"].get<std::string>().c_str(), err,
                frac);
    EXPECT_LE(err, 2e-2) << c["name"];
  }
}

TEST(PipelineApi, InterruptFromCallbackStopsAfterThatStep) {
  PretrainedOptions o;
  o.torch_dtype = "float32";
  o.low_memory = true;
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
  CallParams p;
  p.prompt = {"a cat"};
  p.height = p.width = 32;
  p.num_inference_steps = 6;
  p.guidance_scale = 0;
  p.generator = {{1, "cpu"}};
  p.output_type = OutputType::Latent;
  int calls = 0;
  p.callback_on_step_end = [&](ZImagePipeline& self, int i, float, Tensor&) {
    ++calls;
    if (i == 2) self.interrupt();
  };
  auto out = pipe(p);
  EXPECT_EQ(calls, 3);
  EXPECT_TRUE(out.images.empty());
  EXPECT_EQ(out.latents.shape(), (Shape{1, 16, 8, 8}));
}

TEST(PipelineApi, ValidationErrorsNameTheValue) {
  auto expect = [](CallParams p, const std::string& what) {
    try {
      validate_call_params(p);
      FAIL() << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  CallParams p;
  p.prompt = {"x"};
  p.height = 1000;
  expect(p, "height must be divisible by 16 (got 1000)");
  p.height = 64;
  p.width = 0;
  expect(p, "width must be positive, got 0");
  p.width = 64;
  p.num_inference_steps = -1;
  expect(p, "num_inference_steps must be at least 1, got -1");
  p.num_inference_steps = 4;
  p.guidance_scale = std::nanf("");
  expect(p, "guidance_scale must be a finite number");
  p.guidance_scale = 0;
  p.prompt = {"a", "b"};
  p.generator = {{1, "cpu"}, {2, "cpu"}, {3, "cpu"}};
  expect(p, "3 generators (seeds) for 2 images");
  p.generator = {{1, "cuda"}};
  expect(p, "CUDA Philox");
  p.generator = {};
  p.negative_prompt = {"n1", "n2", "n3"};
  expect(p, "3 negative prompts for 2 prompts");
}

TEST(PipelineApi, BackendsAndDevices) {
  PretrainedOptions o;
  o.low_memory = true;
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
  pipe.set_attention_backend("native");
  EXPECT_THROW(pipe.set_attention_backend("nope"), Error);
  EXPECT_THROW(pipe.set_attention_backend("_flash_3"), Error);
  EXPECT_THROW(pipe.to("cuda"), Error);
  EXPECT_THROW(pipe.to("tpu"), Error);
}

// VAE tiling through the pipeline: forced seamless tiles land within 40 dB of the untiled
// decode of the same latents; diffusers-mode tiles change the image visibly; bad values are
// refused with the value named.
TEST(PipelineApi, VaeTiling) {
  PretrainedOptions o;
  o.torch_dtype = "float32";
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
  EXPECT_EQ(pipe.vae_tiling().tiling, "auto");
  CallParams p;
  p.prompt = {"a cat"};
  p.height = 96;
  p.width = 160;  // latents 24 x 40 (the tiny VAE scales by 4): 3 x 5 tiles of 8
  p.num_inference_steps = 2;
  p.guidance_scale = 0;
  p.generator = {{7, "cpu"}};
  p.output_type = OutputType::Array;
  auto untiled = pipe(p);
  auto psnr = [](const Tensor& a, const Tensor& b) {
    double se = 0;
    for (int64_t i = 0; i < a.numel(); ++i) se += std::pow(double(a.f32()[i]) - double(b.f32()[i]), 2);
    return 10 * std::log10(double(a.numel()) / std::max(se, 1e-30));
  };
  VaeTilingOptions t;
  t.tiling = "on";
  t.tile_size = 8;
  pipe.set_vae_tiling(t);
  auto seamless = pipe(p);
  ASSERT_EQ(seamless.array.shape(), untiled.array.shape());
  EXPECT_EQ(rel_l2(seamless.latents, untiled.latents), 0.0);
  const double ps = psnr(seamless.array, untiled.array);
  t.mode = "diffusers";
  pipe.set_vae_tiling(t);
  auto diff = pipe(p);
  const double pd = psnr(diff.array, untiled.array);
  std::printf("pipeline 96x160, VAE tile 8: seamless %.2f dB, diffusers-mode %.2f dB vs untiled\n", ps, pd);
  EXPECT_GE(ps, 40.0);
  EXPECT_GT(rel_l2(seamless.array, untiled.array), 0.0);
  EXPECT_LT(pd, ps);
  auto expect_error = [&](VaeTilingOptions bad, const std::string& what) {
    try {
      pipe.set_vae_tiling(bad);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  VaeTilingOptions bad;
  bad.tiling = "yes";
  expect_error(bad, "tiling 'yes'");
  bad = {};
  bad.mode = "smooth";
  expect_error(bad, "tile mode 'smooth'");
  bad = {};
  bad.tile_size = -4;
  expect_error(bad, "tile size -4");
  bad = {};
  bad.memory_budget_gb = -1;
  expect_error(bad, "memory budget -1");
  EXPECT_EQ(pipe.vae_tiling().mode, "diffusers");  // a refused setting leaves the last good one
}

// PretrainedOptions are checked before anything is loaded: num_threads was passed to OpenMP
// unchecked (100000 crashed inside libgomp, -5 meant all cores) and float16 computed in float32.
TEST(PipelineApi, PretrainedOptionsAreChecked) {
  auto error_of = [](const PretrainedOptions& o) -> std::string {
    try {
      validate_pretrained_options(o);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  PretrainedOptions o;
  EXPECT_EQ(error_of(o), "");
  o.num_threads = max_num_threads();
  EXPECT_EQ(error_of(o), "");
  EXPECT_GE(max_num_threads(), 4);
  for (int bad : {-5, -1, max_num_threads() + 1, 100000}) {
    o.num_threads = bad;
    EXPECT_NE(error_of(o).find("[from_pretrained] num_threads must be 0 (all cores) or 1.." +
                               std::to_string(max_num_threads())),
              std::string::npos);
    EXPECT_NE(error_of(o).find("got " + std::to_string(bad)), std::string::npos) << error_of(o);
  }
  o.num_threads = 0;
  for (const char* dt : {"float16", "fp16", "half"}) {
    o.torch_dtype = dt;
    EXPECT_NE(error_of(o).find(std::string("torch_dtype '") + dt + "' is not supported"), std::string::npos)
        << error_of(o);
    EXPECT_NE(error_of(o).find("use bfloat16 (same memory, float32 range) or float32"), std::string::npos);
  }
  o.torch_dtype = "float32";
  o.vae_dtype = "float16";
  EXPECT_NE(error_of(o).find("vae_dtype 'float16' is not supported"), std::string::npos) << error_of(o);
  o.vae_dtype = "bf16";
  EXPECT_EQ(error_of(o), "");
  // from_pretrained checks them first (the folder does not exist either).
  o.num_threads = 100000;
  try {
    ZImagePipeline::from_pretrained("/no/such/model", o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_threads"), std::string::npos) << e.what();
  }
}

TEST(PipelineApi, SizeHintsDoNotOverflow) {
  CallParams p;
  p.prompt = {"x"};
  p.height = 64;
  p.width = 2147483647;
  try {
    validate_call_params(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "[pipeline] width must be divisible by 16 (got 2147483647); use 8192");
  }
}

TEST(PipelineApi, LatentsShape) {
  PretrainedOptions o;
  o.torch_dtype = "float32";
  o.low_memory = true;
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
  CallParams p;
  p.prompt = {"a cat", "a dog"};
  p.height = 48;
  p.width = 64;
  p.num_inference_steps = 1;
  p.guidance_scale = 0;
  p.generator = {{3, "cpu"}};
  p.output_type = OutputType::Latent;
  EXPECT_EQ(pipe(p).latents.shape(), pipe.latents_shape(2, 48, 64));
}
