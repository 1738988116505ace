// LoRA adapters (weights/lora.h): generations with LoRAs against diffusers' load_lora_weights +
// set_adapters (tests/fixtures/lora, made by tools/reference/make_lora_fixtures.py), and the
// errors for bad LoRA files.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "transformer/transformer_z_image.h"
#include "util/test_util.h"
#include "weights/lora.h"
#include "zimage/pipeline.h"

using namespace zimage;
using json = nlohmann::json;

namespace {

json manifest() {
  std::ifstream f(test::fixture("lora/MANIFEST.json"));
  return json::parse(f);
}

Tensor run(const std::string& model, const json& c, const json& m) {
  PretrainedOptions o;
  o.torch_dtype = model == "tiny-fp32" ? "float32" : "bfloat16";
  for (auto& l : c["loras"])
    o.loras.push_back({test::fixture("lora/" + model + "_" + l[0].get<std::string>() + ".safetensors"), l[1].get<double>()});
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/" + model), o);
  CallParams p;
  p.prompt = {m["prompt"].get<std::string>()};
  p.height = m["height"].get<int>();
  p.width = m["width"].get<int>();
  p.num_inference_steps = m["num_inference_steps"].get<int>();
  p.guidance_scale = m["guidance_scale"].get<float>();
  p.generator = {{m["seed"].get<uint64_t>(), "cpu"}};
  p.output_type = OutputType::Latent;
  return pipe(p).latents;
}

Tensor ref(const std::string& model, const std::string& name) {
  SafeTensorsFile f(test::fixture("lora/" + model + "_" + name + "_latents.safetensors"));
  return f.get("latents").clone();
}

void parity(const std::string& model, double tol) {
  const json m = manifest();
  int n = 0;
  for (auto& c : m["cases"]) {
    if (c["model"] != model) continue;
    const std::string name = c["name"];
    Tensor out = run(model, c, m), want = ref(model, name);
    const double err = rel_l2(out, want);
    std::printf("[%s %s] latents rel L2 vs diffusers %.3g\n", model.c_str(), name.c_str(), err);
    testing::Test::RecordProperty(model + "_" + name + "_rel_l2", std::to_string(err));
    EXPECT_LE(err, tol) << name;
    if (name != "none") {  // the LoRA changes the result well beyond the tolerance
      const double effect = rel_l2(ref(model, "none"), want);
      std::printf("[%s %s] the LoRA's effect (rel L2 none vs LoRA, diffusers) %.3g\n", model.c_str(), name.c_str(), effect);
      EXPECT_GT(effect, 10 * tol) << name;
    }
    ++n;
  }
  EXPECT_EQ(n, 4);
}

// A LoRA file with one module's A/B (and alpha when finite or NaN is wanted) in a temp folder.
std::string write_lora(const std::string& tag, const std::map<std::string, Tensor>& t) {
  const std::string p = test::temp_dir("lora_" + tag) + "/l.safetensors";
  save_safetensors(p, t);
  return p;
}

std::vector<TensorSpec> specs() {
  return ZImageTransformer2DModel::expected_tensors(
      ZImageTransformerConfig::load(test::fixture("models/tiny-fp32/transformer/config.json")));
}

std::string load_error(const std::string& path, double scale = 1.0) {
  try {
    weights::LoraSet::load({{path, scale}}, specs());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(LoraParity, Fp32MatchesDiffusers) { parity("tiny-fp32", 1e-5); }

// bf16: diffusers runs the LoRA branch in bf16 next to the bf16 weight; the merge rounds W + dW
// to bf16 once. The figure is printed; the bound is the pipeline's bf16 bound.
TEST(LoraParity, Bf16CloseToDiffusers) { parity("tiny-bf16", 2e-2); }

TEST(LoraFile, MergeIsWPlusScaleAlphaOverRankBA) {
  // layers.0.attention.to_q of tiny-fp32 is [72, 72]; rank 2, alpha 1, scale 0.5 -> factor 0.25.
  std::vector<float> a(2 * 72), b(72 * 2);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i % 7) * 0.1f - 0.3f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = float(i % 5) * 0.2f - 0.4f;
  auto p = write_lora("merge", {{"transformer.layers.0.attention.to_q.lora_A.weight", Tensor::from_f32({2, 72}, a)},
                                {"transformer.layers.0.attention.to_q.lora_B.weight", Tensor::from_f32({72, 2}, b)},
                                {"transformer.layers.0.attention.to_q.alpha", Tensor::from_f32({}, {1.0f})}});
  auto set = weights::LoraSet::load({{p, 0.5}}, specs());
  ASSERT_NE(set.find("layers.0.attention.to_q.weight"), nullptr);
  EXPECT_EQ(set.num_modules(), 1u);
  Tensor w = Tensor::zeros(DType::F32, {72, 72});
  set.merge_into("layers.0.attention.to_q.weight", w);
  for (int o : {0, 13, 71})
    for (int i : {0, 5, 70}) {
      double want = 0;
      for (int k = 0; k < 2; ++k) want += double(b[size_t(o * 2 + k)]) * a[size_t(k * 72 + i)];
      EXPECT_NEAR(w.f32()[o * 72 + i], 0.25 * want, 1e-6);
    }
}

TEST(LoraFile, UnknownNamesAreListed) {
  auto p = write_lora("unknown", {{"transformer.layers.9.attention.to_q.lora_A.weight", Tensor::zeros(DType::F32, {2, 72})},
                                  {"transformer.layers.9.attention.to_q.lora_B.weight", Tensor::zeros(DType::F32, {72, 2})}});
  const std::string e = load_error(p);
  EXPECT_NE(e.find("[lora] "), std::string::npos) << e;
  EXPECT_NE(e.find("2 keys match no transformer module: transformer.layers.9.attention.to_q.lora_A.weight"), std::string::npos) << e;
}

TEST(LoraFile, WrongShapeNanAlphaRankAndScaleAreErrors) {
  auto wrong = write_lora("shape", {{"transformer.layers.0.attention.to_q.lora_A.weight", Tensor::zeros(DType::F32, {2, 70})},
                                    {"transformer.layers.0.attention.to_q.lora_B.weight", Tensor::zeros(DType::F32, {72, 2})}});
  EXPECT_NE(load_error(wrong).find("do not fit the weight [72, 72]"), std::string::npos) << load_error(wrong);
  auto nan = write_lora("nan", {{"transformer.layers.0.attention.to_q.lora_A.weight", Tensor::zeros(DType::F32, {2, 72})},
                                {"transformer.layers.0.attention.to_q.lora_B.weight", Tensor::zeros(DType::F32, {72, 2})},
                                {"transformer.layers.0.attention.to_q.alpha", Tensor::from_f32({}, {NAN})}});
  EXPECT_NE(load_error(nan).find("transformer.layers.0.attention.to_q.alpha holds a NaN"), std::string::npos) << load_error(nan);
  auto big = write_lora("rank", {{"transformer.layers.0.attention.to_q.lora_A.weight", Tensor::zeros(DType::F32, {80, 72})},
                                 {"transformer.layers.0.attention.to_q.lora_B.weight", Tensor::zeros(DType::F32, {72, 80})}});
  EXPECT_NE(load_error(big).find("rank 80 is larger than the layer [72, 72]"), std::string::npos) << load_error(big);
  auto lone = write_lora("lone", {{"transformer.layers.0.attention.to_q.lora_A.weight", Tensor::zeros(DType::F32, {2, 72})}});
  EXPECT_NE(load_error(lone).find("lora_A without lora_B"), std::string::npos) << load_error(lone);
  EXPECT_NE(load_error(test::fixture("lora/tiny-fp32_peft.safetensors"), INFINITY).find("is not finite"), std::string::npos);
}

TEST(LoraFile, ParseArg) {
  auto a = weights::parse_lora_arg("dir/x.safetensors:0.75");
  EXPECT_EQ(a.path, "dir/x.safetensors");
  EXPECT_DOUBLE_EQ(a.scale, 0.75);
  auto b = weights::parse_lora_arg("C:x.safetensors");  // no number after the colon: all path
  EXPECT_EQ(b.path, "C:x.safetensors");
  EXPECT_DOUBLE_EQ(b.scale, 1.0);
  EXPECT_THROW(weights::parse_lora_arg(":0.5"), Error);
  EXPECT_THROW(weights::parse_lora_arg("x:nan"), Error);
}
