// fp8 (float8_e4m3fn) transformer files against diffusers (tests/fixtures/fp8, made by
// tools/reference/make_fp8_fixtures.py): the tiny-bf16 transformer written as fp8 by torch, in the
// original / ComfyUI layout without scales (diffusers: from_single_file casts each fp8 tensor to
// torch_dtype), and in diffusers' layout with per-tensor (ComfyUI scale_weight) and per-row
// (diffusers fp8r weight_scale) scales (diffusers: the weights dequantized as w.float() * scale).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "transformer/transformer_z_image.h"
#include "util/fixture_call.h"
#include "util/test_util.h"
#include "weights/loader.h"
#include "weights/lora.h"
#include "zimage/pipeline.h"

using namespace zimage;
using json = nlohmann::json;

namespace {

json manifest() {
  std::ifstream f(test::fixture("fp8/MANIFEST.json"));
  return json::parse(f);
}

Tensor latents(const std::string& rel) { return SafeTensorsFile(test::fixture(rel)).get("latents").clone(); }

void parity(const std::string& dtype, double tol) {
  const json m = manifest();
  // the same prompt, size, steps and seed as the LoRA fixtures' run without LoRA (tiny-bf16's own weights)
  const Tensor own = latents("lora/tiny-bf16_none_latents.safetensors");
  int n = 0;
  for (auto& c : m["cases"]) {
    if (c["dtype"] != dtype) continue;
    PretrainedOptions o;
    o.torch_dtype = dtype == "fp32" ? "float32" : "bfloat16";
    o.transformer_file = test::fixture("fp8/" + c["file"].get<std::string>());
    auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/" + m["model"].get<std::string>()), o);
    CallParams p = test::fixture_call(m);
    const Tensor out = pipe(p).latents, want = latents("fp8/" + c["latents"].get<std::string>());
    const double err = rel_l2(out, want), effect = rel_l2(own, want);
    const std::string name = c["name"];
    std::printf("[%s] latents rel L2 vs diffusers %.3g (fp8 vs the bf16 weights in diffusers: %.3g)\n", name.c_str(),
                err, effect);
    testing::Test::RecordProperty(name + "_rel_l2", std::to_string(err));
    EXPECT_LE(err, tol) << name;
    EXPECT_GT(effect, 2 * tol) << name;  // the fp8 rounding shows: the file's weights were used
    ++n;
  }
  EXPECT_EQ(n, 2);
}

}  // namespace

TEST(Fp8Parity, Fp32MatchesDiffusers) { parity("fp32", 1e-5); }
TEST(Fp8Parity, Bf16CloseToDiffusers) { parity("bf16", 2e-2); }

// The linear weights stay fp8 in the mapping (upcast per tile by the GEMM); the rest is upcast.
TEST(Fp8Parity, LinearWeightsStayFp8) {
  WeightStore ws = WeightStore::open_file(test::fixture("fp8/transformer_fp8.safetensors"));
  ZImageTransformer2DModel::convert_original_layout(ws);
  const weights::Loader w(ws, DType::BF16, "transformer");
  const weights::LinearWeight q = w.linear_weight("layers.0.attention.to_k.weight", 64, 64);
  ASSERT_TRUE(q.is_quantized());
  EXPECT_EQ(q.quantized->cols, 64);
  EXPECT_TRUE(q.quantized->scale.empty());
  EXPECT_EQ(w.param("layers.0.attention.norm_q.weight", {32}).dtype(), DType::F32);
  WeightStore s = WeightStore::open_file(test::fixture("fp8/transformer_fp8_scaled.safetensors"));
  const weights::Loader ls(s, DType::F32, "transformer");
  EXPECT_EQ(ls.linear_weight("layers.0.attention.to_k.weight", 64, 64).quantized->scale.size(), 1u);   // scale_weight
  EXPECT_EQ(ls.linear_weight("layers.0.attention.to_v.weight", 64, 64).quantized->scale.size(), 64u);  // weight_scale
  EXPECT_FALSE(s.has("layers.0.attention.to_k.scale_weight"));
  EXPECT_FALSE(s.has("scaled_fp8"));
}

// A LoRA on an fp8 weight: the weight is upcast (times its scale) and the LoRA merged into it,
// as on a dense weight (a GGUF-quantized one refuses).
TEST(Fp8Parity, LoraMergesIntoTheUpcastWeight) {
  const WeightStore s = WeightStore::open_file(test::fixture("fp8/transformer_fp8_scaled.safetensors"));
  const auto specs = ZImageTransformer2DModel::expected_tensors(
      ZImageTransformerConfig::load(test::fixture("models/tiny-bf16/transformer/config.json")));
  const auto lora = weights::LoraSet::load({{test::fixture("lora/tiny-bf16_peft.safetensors"), 0.8, ""}}, specs);
  weights::Loader w(s, DType::F32, "transformer");
  w.set_lora(&lora);
  for (const char* name :
       {"layers.0.attention.to_k.weight", "layers.0.attention.to_v.weight"}) {  // per tensor, per row
    ASSERT_NE(lora.find(name), nullptr) << name;
    const weights::LinearWeight lw = w.linear_weight(name, 64, 64);
    ASSERT_FALSE(lw.is_quantized()) << name;
    Tensor want = s.get(name, {64, 64}).clone();
    const Tensor upcast = want.clone();
    lora.merge_into(name, want);
    EXPECT_EQ(lw.dense.to(DType::F32).to_vector(), want.to_vector()) << name;
    EXPECT_NE(upcast.to_vector(), want.to_vector()) << name;  // the LoRA changed it
  }
}
