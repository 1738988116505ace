// LoRA adapters (weights/lora.h): generations with LoRAs against diffusers' load_lora_weights +
// set_adapters (tests/fixtures/lora, made by tools/reference/make_lora_fixtures.py), and the
// errors for bad LoRA files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "transformer/transformer_z_image.h"
#include "util/fixture_call.h"
#include "util/gguf_writer.h"
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

std::string lora_file(const std::string& model, const std::string& layout) {
  return test::fixture("lora/" + model + "_" + layout + ".safetensors");
}

using test::fixture_call;

Tensor run(const std::string& model, const json& c, const json& m, const std::string& mode = "merge") {
  PretrainedOptions o;
  o.torch_dtype = model == "tiny-fp32" ? "float32" : "bfloat16";
  o.lora_mode = mode;
  for (auto& l : c["loras"]) o.loras.push_back({lora_file(model, l[0].get<std::string>()), l[1].get<double>(), ""});
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/" + model), o);
  return pipe(fixture_call(m)).latents;
}

Tensor ref(const std::string& model, const std::string& name) {
  SafeTensorsFile f(test::fixture("lora/" + model + "_" + name + "_latents.safetensors"));
  return f.get("latents").clone();
}

void parity(const std::string& model, double tol, const std::string& mode = "merge") {
  const json m = manifest();
  int n = 0;
  for (auto& c : m["cases"]) {
    if (c["model"] != model) continue;
    const std::string name = c["name"];
    Tensor out = run(model, c, m, mode), want = ref(model, name);
    const double err = rel_l2(out, want);
    std::printf("[%s %s %s] latents rel L2 vs diffusers %.3g\n", model.c_str(), mode.c_str(), name.c_str(), err);
    testing::Test::RecordProperty(model + "_" + mode + "_" + name + "_rel_l2", std::to_string(err));
    EXPECT_LE(err, tol) << name;
    if (name != "none") {  // the LoRA changes the result well beyond the tolerance
      const double effect = rel_l2(ref(model, "none"), want);
      std::printf("[%s %s] the LoRA's effect (rel L2 none vs LoRA, diffusers) %.3g\n", model.c_str(), name.c_str(),
                  effect);
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
    weights::LoraSet::load({{path, scale, ""}}, specs());
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
  auto set = weights::LoraSet::load({{p, 0.5, ""}}, specs());
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
  auto p = write_lora("unknown",
                      {{"transformer.layers.9.attention.to_q.lora_A.weight", Tensor::zeros(DType::F32, {2, 72})},
                       {"transformer.layers.9.attention.to_q.lora_B.weight", Tensor::zeros(DType::F32, {72, 2})}});
  const std::string e = load_error(p);
  EXPECT_NE(e.find("[lora] "), std::string::npos) << e;
  EXPECT_NE(e.find("2 keys match no transformer module: transformer.layers.9.attention.to_q.lora_A.weight"),
            std::string::npos)
      << e;
}

TEST(LoraFile, WrongShapeNanAlphaRankAndScaleAreErrors) {
  auto wrong =
      write_lora("shape", {{"transformer.layers.0.attention.to_q.lora_A.weight", Tensor::zeros(DType::F32, {2, 70})},
                           {"transformer.layers.0.attention.to_q.lora_B.weight", Tensor::zeros(DType::F32, {72, 2})}});
  EXPECT_NE(load_error(wrong).find("do not fit the weight [72, 72]"), std::string::npos) << load_error(wrong);
  auto nan =
      write_lora("nan", {{"transformer.layers.0.attention.to_q.lora_A.weight", Tensor::zeros(DType::F32, {2, 72})},
                         {"transformer.layers.0.attention.to_q.lora_B.weight", Tensor::zeros(DType::F32, {72, 2})},
                         {"transformer.layers.0.attention.to_q.alpha", Tensor::from_f32({}, {NAN})}});
  EXPECT_NE(load_error(nan).find("transformer.layers.0.attention.to_q.alpha holds a NaN"), std::string::npos)
      << load_error(nan);
  auto big =
      write_lora("rank", {{"transformer.layers.0.attention.to_q.lora_A.weight", Tensor::zeros(DType::F32, {80, 72})},
                          {"transformer.layers.0.attention.to_q.lora_B.weight", Tensor::zeros(DType::F32, {72, 80})}});
  EXPECT_NE(load_error(big).find("rank 80 is larger than the layer [72, 72]"), std::string::npos) << load_error(big);
  auto lone =
      write_lora("lone", {{"transformer.layers.0.attention.to_q.lora_A.weight", Tensor::zeros(DType::F32, {2, 72})}});
  EXPECT_NE(load_error(lone).find("lora_A without lora_B"), std::string::npos) << load_error(lone);
  EXPECT_NE(load_error(test::fixture("lora/tiny-fp32_peft.safetensors"), INFINITY).find("is not finite"),
            std::string::npos);
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

// Run time (lora_mode runtime): the branch next to the unchanged weight, as PEFT runs it.
TEST(LoraParity, RuntimeFp32MatchesDiffusers) { parity("tiny-fp32", 1e-5, "runtime"); }
// bf16: x, A x, B(A x), its product with the scale and the sum rounded to bf16 as PEFT's bf16
// modules round them, so the run-time branch follows diffusers closer than the merge does.
TEST(LoraParity, RuntimeBf16CloseToDiffusers) { parity("tiny-bf16", 2e-2, "runtime"); }

namespace {

Tensor latents(ZImagePipeline& pipe) { return pipe(fixture_call(manifest())).latents; }

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), size_t(a.nbytes())) == 0;
}

PretrainedOptions opts(const std::string& model, std::vector<PretrainedOptions::Lora> loras = {},
                       const std::string& mode = "merge") {
  PretrainedOptions o;
  o.torch_dtype = model == "tiny-fp32" ? "float32" : "bfloat16";
  o.loras = std::move(loras);
  o.lora_mode = mode;
  return o;
}

std::string api_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// A quantized (GGUF) transformer takes its LoRAs as run-time branches (merging would requantize).
// Reference: the same LoRAs at run time on the dense matrices that the GGUF holds (the tiny
// transformer quantized, dequantized by gguf::File into a safetensors file): a quantized matrix
// of one tile is the dense GEMM on its dequantized values, so with lora_mode runtime the latents
// are the same bits. In the default mode the GGUF's float32 weights (the tiny model's 72-wide
// matrices are not whole blocks) are merged and its quantized ones run the branch: close to the
// all-run-time result (float32: to rounding; bfloat16: within the bf16 pipeline bound).
// These comparisons take the dequantize path (ZIMAGE_QUANT_COMPUTE=dequant); the integer GEMM,
// a bf16 run's default for quantized weights, runs the same branch and is checked to be near it.
TEST(LoraQuantized, GgufTransformerRunsTheLoraAtRunTime) {
  setenv("ZIMAGE_QUANT_COMPUTE", "dequant", 1);
  const std::string dir = test::temp_dir("lora_gguf");
  const test::QuantizedTiny q = test::write_quantized_tiny_transformer(dir, test::quantize_linears);
  const std::string dense = q.dense_dir + "/diffusion_pytorch_model.safetensors";
  // The peft LoRA has modules on quantized matrices (feed_forward.w2: 32-multiple rows).
  int on_quantized = 0;
  {
    const WeightStore ws = WeightStore::open_file(q.gguf);
    for (const auto& s : specs())
      on_quantized +=
          ws.is_quantized(s.name) && s.name.rfind("layers.", 0) == 0 &&
          (s.name.find("feed_forward") != std::string::npos || s.name.find("attention") != std::string::npos);
  }
  EXPECT_GT(on_quantized, 0);
  for (const std::string dtype : {"float32", "bfloat16"}) {
    std::vector<PretrainedOptions::Lora> loras = {{lora_file("tiny-fp32", "peft"), 0.8, ""},
                                                  {lora_file("tiny-fp32", "kohya"), 0.5, ""}};
    auto with = [&](const std::string& file, const std::string& mode, bool lora) {
      PretrainedOptions o = opts("tiny-fp32", lora ? loras : std::vector<PretrainedOptions::Lora>{}, mode);
      o.torch_dtype = dtype;
      o.transformer_file = file;
      auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
      return latents(pipe);
    };
    const Tensor gguf_runtime = with(q.gguf, "runtime", true), gguf_mixed = with(q.gguf, "merge", true);
    const Tensor gguf_plain = with(q.gguf, "merge", false), dense_runtime = with(dense, "runtime", true);
    const double effect = rel_l2(gguf_runtime, gguf_plain), mixed = rel_l2(gguf_mixed, dense_runtime);
    std::printf(
        "[%s] GGUF + LoRA: effect of the LoRA %.3g; run time vs dense run time %.3g; merge mode vs dense run time "
        "%.3g\n",
        dtype.c_str(), effect, rel_l2(gguf_runtime, dense_runtime), mixed);
    EXPECT_TRUE(same_bits(gguf_runtime, dense_runtime)) << dtype;
    EXPECT_GT(effect, 1e-2) << dtype;
    EXPECT_LE(mixed, dtype == "float32" ? 1e-5 : 2e-2) << dtype;
    if (dtype == "bfloat16") {  // the integer GEMM (qgemm.h) with the branch: near the dequantize path
      unsetenv("ZIMAGE_QUANT_COMPUTE");
      const Tensor int_runtime = with(q.gguf, "runtime", true);
      setenv("ZIMAGE_QUANT_COMPUTE", "dequant", 1);
      const double d = rel_l2(int_runtime, gguf_runtime);
      std::printf("[bfloat16] GGUF + LoRA, integer GEMM vs dequantize path: %.3g\n", d);
      EXPECT_LE(d, 3e-2);
      EXPECT_LT(d, effect / 4);  // far nearer than the LoRA's own effect
    }
  }
  unsetenv("ZIMAGE_QUANT_COMPUTE");
  std::filesystem::remove_all(dir);
}

// diffusers' load_lora_weights + set_adapters + delete_adapters / unload_lora_weights.
TEST(LoraApi, SetAdaptersGivesTheImageOfLoadingWithThoseScales) {
  for (const std::string model : {"tiny-fp32", "tiny-bf16"}) {
    const std::string peft = lora_file(model, "peft"), kohya = lora_file(model, "kohya");
    auto base = ZImagePipeline::from_pretrained(test::fixture("models/" + model), opts(model));
    const Tensor plain = latents(base);
    auto both = ZImagePipeline::from_pretrained(test::fixture("models/" + model),
                                                opts(model, {{peft, 0.3, ""}, {kohya, 0.7, ""}}, "runtime"));
    const Tensor want_both = latents(both);
    auto one =
        ZImagePipeline::from_pretrained(test::fixture("models/" + model), opts(model, {{kohya, -0.4, ""}}, "runtime"));
    const Tensor want_one = latents(one);

    // Loaded after the pipeline; first run at the default scale 1 (fills the caption cache).
    base.load_lora_weights(peft, "p");
    base.load_lora_weights(kohya);  // adapter name: the file's stem
    const Tensor at_one = latents(base);
    EXPECT_GT(rel_l2(at_one, plain), 1e-2) << model;
    ASSERT_EQ(base.loras().size(), 2u);
    EXPECT_EQ(base.loras()[1].name, model + "_kohya");
    EXPECT_FALSE(base.loras()[0].merged);

    base.set_adapters({"p", model + "_kohya"}, {0.3, 0.7});
    EXPECT_TRUE(same_bits(latents(base), want_both)) << model;
    base.set_adapters({model + "_kohya"}, {-0.4});  // "p" stays loaded but does not run
    EXPECT_FALSE(base.loras()[0].active);
    EXPECT_TRUE(same_bits(latents(base), want_one)) << model;
    base.set_adapters({"p", model + "_kohya"}, {0.3, 0.7});
    base.delete_adapters({"p"});
    EXPECT_EQ(base.loras().size(), 1u);
    base.set_adapters({model + "_kohya"}, {-0.4});
    EXPECT_TRUE(same_bits(latents(base), want_one)) << model;
    base.unload_lora_weights();
    EXPECT_TRUE(base.loras().empty());
    EXPECT_TRUE(same_bits(latents(base), plain)) << model;
  }
}

TEST(LoraApi, MergedLorasUnloadToTheBaseImageAndKeepTheirScale) {
  const std::string peft = lora_file("tiny-fp32", "peft");
  auto base = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), opts("tiny-fp32"));
  const Tensor plain = latents(base);
  for (bool low_memory : {false, true}) {
    PretrainedOptions o = opts("tiny-fp32", {{peft, 0.8, "style"}});
    o.low_memory = low_memory;
    auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o);
    const Tensor merged = latents(pipe);
    EXPECT_GT(rel_l2(merged, plain), 1e-2);
    ASSERT_EQ(pipe.loras().size(), 1u);
    EXPECT_TRUE(pipe.loras()[0].merged);
    EXPECT_EQ(pipe.loras()[0].name, "style");
    pipe.set_adapters({"style"}, {0.8});  // the same scale: fine
    const std::string e = api_error([&] { pipe.set_adapters({"style"}, {0.5}); });
    EXPECT_NE(e.find("[lora] set_adapters: adapter 'style' was merged into the weights at load (lora_mode merge): its "
                     "scale 0.8 is fixed"),
              std::string::npos)
        << e;
    pipe.unload_lora_weights();
    EXPECT_TRUE(same_bits(latents(pipe), plain)) << low_memory;
    // Loaded again at run time (low_memory: attached again at each reload of the transformer).
    pipe.load_lora_weights(peft, "style", 0.8);
    const Tensor runtime = latents(pipe);
    EXPECT_LE(rel_l2(runtime, merged), 1e-5);
    EXPECT_TRUE(same_bits(latents(pipe), runtime));
  }
}

TEST(LoraApi, BadCallsAreErrors) {
  const std::string peft = lora_file("tiny-fp32", "peft");
  auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), opts("tiny-fp32"));
  pipe.load_lora_weights(peft, "a");
  std::string e = api_error([&] { pipe.load_lora_weights(peft, "a"); });
  EXPECT_NE(e.find("[lora] adapter name 'a' (" + peft + ") is already loaded (" + peft + ")"), std::string::npos) << e;
  e = api_error([&] { pipe.set_adapters({"b"}); });
  EXPECT_NE(e.find("[lora] set_adapters: no adapter named 'b' (loaded: 'a')"), std::string::npos) << e;
  e = api_error([&] { pipe.set_adapters({"a"}, {1.0, 2.0}); });
  EXPECT_NE(e.find("1 adapter names but 2 weights"), std::string::npos) << e;
  e = api_error([&] { pipe.set_adapters({"a"}, {NAN}); });
  EXPECT_NE(e.find("weight nan is not a finite number"), std::string::npos) << e;
  e = api_error([&] { pipe.delete_adapters({"c"}); });
  EXPECT_NE(e.find("[lora] delete_adapters: no adapter named 'c' (loaded: 'a')"), std::string::npos) << e;
  e = api_error([&] { pipe.load_lora_weights(lora_file("tiny-bf16", "peft"), "w"); });
  EXPECT_NE(e.find("do not fit the weight [72, 72]"), std::string::npos) << e;
  EXPECT_EQ(pipe.loras().size(), 1u);  // the failed loads added nothing
  auto o = opts("tiny-fp32", {{peft, 1.0, ""}, {peft, 0.5, ""}});
  e = api_error([&] { ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o); });
  EXPECT_NE(e.find("[lora] adapter name 'tiny-fp32_peft'"), std::string::npos) << e;
  o = opts("tiny-fp32", {}, "fused");
  e = api_error([&] { ZImagePipeline::from_pretrained(test::fixture("models/tiny-fp32"), o); });
  EXPECT_NE(e.find("[lora] lora_mode 'fused' is not one of merge, runtime"), std::string::npos) << e;
}
