// diffusers' GGUF path as the reference of a quantized transformer (tests/fixtures/ref/gguf, made by
// tools/reference/make_gguf_fixtures.py --diffusers-parity): the tiny-bf16 transformer written by
// the `gguf` package in the original key layout with Q8_0 linear weights (gguf.quants.quantize),
// Q4_K timestep-embedder weights and BF16 / F32 for the rest, run by diffusers as
// ZImageTransformer2DModel.from_single_file(gguf, quantization_config=GGUFQuantizationConfig(
// compute_dtype=D), torch_dtype=D) in ZImagePipeline; the same committed file runs here. diffusers'
// GGUF path dequantizes every weight into float16 first (dequantize_gguf_tensor passes dtype=None),
// while the engine dequantizes exactly as gguf.quants.dequantize does (bit for bit), so against that
// path the bound is the bf16 parity tests' 2e-2 (PipelineParityBf16, Fp8Parity) in both dtypes; the
// float32 run is also compared with diffusers on the same weights dequantized by the gguf package
// (exact_fp32, loaded dense) within the float32 single-file bound 1e-5 (Fp8Parity).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/gguf.h"
#include "core/safetensors.h"
#include "util/fixture_call.h"
#include "util/test_util.h"
#include "zimage/pipeline.h"

using namespace zimage;
using json = nlohmann::json;

namespace {

json manifest() {
  std::ifstream f(test::fixture("ref/gguf/MANIFEST.json"));
  return json::parse(f);
}

Tensor latents(const std::string& rel) { return SafeTensorsFile(test::fixture(rel)).get("latents").clone(); }

void parity(const std::string& dtype, const std::string& kind, double tol) {
  const json m = manifest();
  // the same prompt, size, steps and seed as the LoRA fixtures' run without LoRA (tiny-bf16's own weights)
  const Tensor own = latents("lora/tiny-bf16_none_latents.safetensors");
  int n = 0;
  for (auto& c : m["cases"]) {
    if (c["dtype"] != dtype || c["kind"] != kind) continue;
    PretrainedOptions o;
    o.torch_dtype = dtype == "fp32" ? "float32" : "bfloat16";
    o.transformer_file = test::fixture("ref/gguf/" + m["gguf"].get<std::string>());
    auto pipe = ZImagePipeline::from_pretrained(test::fixture("models/" + m["model"].get<std::string>()), o);
    CallParams p = test::fixture_call(m);
    const Tensor out = pipe(p).latents, want = latents("ref/gguf/" + c["latents"].get<std::string>());
    const double err = rel_l2(out, want), effect = rel_l2(own, want);
    const std::string name = c["name"];
    std::printf("[%s] latents rel L2 vs diffusers (%s) %.3g (vs the dense bf16 weights in diffusers: %.3g)\n",
                name.c_str(), kind.c_str(), err, effect);
    testing::Test::RecordProperty(name + "_rel_l2", std::to_string(err));
    EXPECT_LE(err, tol) << name;
    EXPECT_GT(effect, 2 * tol) << name;  // the quantized weights show: the file's weights were used
    ++n;
  }
  EXPECT_EQ(n, 1);
}

}  // namespace

// The committed file holds what the test is about: Q8_0 and Q4_K weights, kept quantized.
TEST(GgufParity, FileHoldsQ8_0AndQ4_KWeights) {
  const json m = manifest();
  const std::string path = test::fixture("ref/gguf/" + m["gguf"].get<std::string>());
  gguf::File g(path);
  std::map<std::string, int> types;
  for (const gguf::TensorInfo& t : g.tensors()) ++types[quantized_type_name(t.type)];
  EXPECT_GT(types["Q8_0"], 10);
  EXPECT_EQ(types["Q4_K"], 2);
  WeightStore ws = WeightStore::open_file(path);
  EXPECT_TRUE(ws.is_quantized("t_embedder.mlp.0.weight"));
  EXPECT_TRUE(ws.is_quantized("layers.0.attention.qkv.weight"));
}

TEST(GgufParity, Fp32CloseToDiffusersGgufPath) { parity("fp32", "diffusers_gguf", 2e-2); }
TEST(GgufParity, Bf16CloseToDiffusersGgufPath) { parity("bf16", "diffusers_gguf", 2e-2); }
TEST(GgufParity, Fp32MatchesDiffusersOnTheGgufPackagesDequantization) { parity("fp32", "exact_dequant", 1e-5); }
