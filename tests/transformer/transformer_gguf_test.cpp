// The transformer from a GGUF file with quantized linear weights (kept quantized, ops/quantized.h)
// equals, bit for bit, the transformer from the same weights dequantized into a float32
// safetensors folder (each of the tiny model's matrices is one tile, see ops/quantized.h) on the
// dequantize path (ZIMAGE_QUANT_COMPUTE=dequant); the integer GEMM (the bf16 default) is within the
// activation quantization's error of it.
// The GGUF is written here from the tiny fp32 fixture: every 2-D linear weight whose rows are a
// whole number of blocks becomes a block type (Q8_0/Q5_0/Q4_0 for 32-multiples, Q6_K/Q5_K/Q4_K/
// Q3_K/Q2_K for 256-multiples) filled with random, well-scaled blocks; the rest stays F32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>

#include "core/gguf.h"
#include "core/safetensors.h"
#include "transformer/transformer_z_image.h"
#include "util/gguf_writer.h"
#include "util/test_util.h"

namespace zimage {
namespace {
namespace fs = std::filesystem;

// Sets ZIMAGE_QUANT_COMPUTE (ops/quantized.h) until destroyed (null: unset).
struct QuantComputeEnv {
  explicit QuantComputeEnv(const char* v) {
    if (v)
      setenv("ZIMAGE_QUANT_COMPUTE", v, 1);
    else
      unsetenv("ZIMAGE_QUANT_COMPUTE");
  }
  ~QuantComputeEnv() { unsetenv("ZIMAGE_QUANT_COMPUTE"); }
};

std::vector<Tensor> run_case(const ZImageTransformer2DModel& m, const std::string& c) {
  SafeTensorsFile ref(test::fixture("ref/tiny-fp32/transformer.safetensors"));
  std::vector<Tensor> xs, caps;
  for (int j = 0; ref.has(c + ".x" + std::to_string(j)); ++j) {
    xs.push_back(ref.get(c + ".x" + std::to_string(j)).to(DType::F32));
    caps.push_back(ref.get(c + ".cap" + std::to_string(j)).to(DType::F32));
  }
  return m.forward(xs, ref.get(c + ".t").to_vector(), caps);
}

void compare(const test::QuantizedTiny& m, DType compute) {
  const QuantComputeEnv env("dequant");
  const std::string fix = test::fixture("models/tiny-fp32/transformer");
  const auto q = ZImageTransformer2DModel::load(fix, compute, m.gguf);
  const auto d = ZImageTransformer2DModel::load(m.dense_dir, compute);
  SafeTensorsFile ref(test::fixture("ref/tiny-fp32/transformer.safetensors"));
  for (const std::string c : {"single", "batch2"}) {
    ASSERT_TRUE(ref.has(c + ".t")) << c;
    std::vector<Tensor> xs, caps;
    for (int j = 0; ref.has(c + ".x" + std::to_string(j)); ++j) {
      xs.push_back(ref.get(c + ".x" + std::to_string(j)).to(DType::F32));
      caps.push_back(ref.get(c + ".cap" + std::to_string(j)).to(DType::F32));
    }
    const std::vector<float> t = ref.get(c + ".t").to_vector();
    const auto a = q.forward(xs, t, caps), b = d.forward(xs, t, caps);
    ASSERT_EQ(a.size(), b.size());
    for (size_t j = 0; j < a.size(); ++j) {
      const double err = rel_l2(a[j], b[j]);
      std::printf("  gguf vs dequantized fp32 folder, %s compute=%s item %zu: rel L2 %.3g\n", c.c_str(),
                  dtype_name(compute), j, err);
      // every linear of the tiny model is one tile: the same GEMM on the same values
      EXPECT_EQ(err, 0.0);
      for (int64_t k = 0; k < a[j].numel(); ++k) ASSERT_TRUE(std::isfinite(a[j].f32()[k]));
    }
  }
}

}  // namespace

TEST(TransformerGguf, QuantizedEqualsDequantizedFolder) {
  const test::QuantizedTiny m = test::write_quantized_tiny_transformer(test::temp_dir("tgguf"), test::quantize_linears);
  for (auto& [type, n] : m.per_type) std::printf("  %s: %d tensors\n", type.c_str(), n);
  // The tiny model has two linears with 256-multiple rows (the others are covered by
  // QuantizedLinear.TilesEqualTheDenseGemm).
  for (const char* t : {"Q8_0", "Q5_0", "Q4_0", "Q6_K", "Q2_K"}) EXPECT_GE(m.per_type.count(t), 1u) << t;
  compare(m, DType::F32);
  compare(m, DType::BF16);
  fs::remove_all(m.dir);
}

// The integer GEMM (qgemm.h) is what a bf16 run takes by default (ZIMAGE_QUANT_COMPUTE=int forces
// it in f32): its outputs differ from the dequantize path's, by no more than the activations'
// int8 quantization explains. Per GEMM that is |x - d q| <= d / 2 with d = max|x| / 127 per block
// of 32: a relative error of at most 1/254 of the block's largest |x| per element, about 0.3 %
// rms of the outputs for Gaussian-like rows; bf16's own rounding of the activations is 2^-9. The
// tiny model chains ~10 GEMMs (with residuals): 3 % rel L2 leaves room for that growth, and it is
// an order of magnitude below what Q4 weights themselves change (their quantization is ~10 %).
TEST(TransformerGguf, IntegerGemmIsUsedAndNearTheDequantizePath) {
  const test::QuantizedTiny m =
      test::write_quantized_tiny_transformer(test::temp_dir("tgguf-int"), test::quantize_linears);
  const std::string fix = test::fixture("models/tiny-fp32/transformer");
  for (DType compute : {DType::BF16, DType::F32}) {
    const auto model = ZImageTransformer2DModel::load(fix, compute, m.gguf);
    std::vector<Tensor> deq, integer;
    {
      const QuantComputeEnv env("dequant");
      deq = run_case(model, "batch2");
    }
    {
      const QuantComputeEnv env(compute == DType::BF16 ? nullptr : "int");  // bf16: the default
      integer = run_case(model, "batch2");
    }
    ASSERT_EQ(deq.size(), integer.size());
    for (size_t j = 0; j < deq.size(); ++j) {
      const double err = rel_l2(integer[j], deq[j]);
      std::printf("  integer vs dequantize path, compute=%s item %zu: rel L2 %.3g\n", dtype_name(compute), j, err);
      EXPECT_GT(err, 0.0);   // another computation: the integer path was taken
      EXPECT_LT(err, 3e-2);  // within the activation quantization's error (above)
      for (int64_t k = 0; k < integer[j].numel(); ++k) ASSERT_TRUE(std::isfinite(integer[j].f32()[k]));
    }
  }
  // a bad value is an error naming it
  const auto model = ZImageTransformer2DModel::load(fix, DType::BF16, m.gguf);
  const QuantComputeEnv env("fast");
  try {
    run_case(model, "single");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ZIMAGE_QUANT_COMPUTE must be int or dequant (got \"fast\")"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(m.dir);
}

TEST(TransformerGguf, BadFilesAreErrors) {
  const std::string fix = test::fixture("models/tiny-fp32/transformer");
  // a norm weight stored quantized: only linear layers take quantized weights
  const test::QuantizedTiny m = test::write_quantized_tiny_transformer(
      test::temp_dir("tgguf"), [](const std::string& name, const Tensor& t, int i) {
        return name == "cap_embedder.0.weight" ? uint32_t(gguf::GgmlType::Q8_0) : test::quantize_linears(name, t, i);
      });
  try {
    ZImageTransformer2DModel::load(fix, DType::F32, m.gguf);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[transformer] weights: " + m.gguf +
                                         ": tensor 'cap_embedder.0.weight' is stored as Q8_0 (quantized); only "
                                         "linear layers take quantized weights"),
              std::string::npos)
        << e.what();
  }
  // a missing tensor, and a file that is not GGUF or safetensors
  const std::string dir = test::temp_dir("tgguf-bad");
  test::write_file(dir + "/one.gguf", test::gguf_bytes({{"x_pad_token", {1, 72}, 0, std::string(288, '\0')}}));
  try {
    ZImageTransformer2DModel::load(fix, DType::F32, dir + "/one.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[transformer] weights: " + dir + "/one.gguf: missing"), std::string::npos)
        << e.what();
  }
  test::write_file(dir + "/trunc.gguf",
                   test::gguf_bytes({{"x_pad_token", {1, 72}, 0, std::string(288, '\0')}}).substr(0, 60));
  try {
    ZImageTransformer2DModel::load(fix, DType::F32, dir + "/trunc.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("[transformer] gguf: " + dir + "/trunc.gguf: truncated", 0), 0u) << e.what();
  }
  fs::remove_all(dir);
  fs::remove_all(m.dir);
}
}  // namespace zimage

namespace zimage {
namespace {

// The tiny transformer in the original / ComfyUI key layout (diffusers'
// convert_z_image_transformer_checkpoint_to_diffusers backwards): fused qkv, attention.out,
// q_norm/k_norm, x_embedder./final_layer., `prefix` on every key, plus a norm_final.weight.
std::map<std::string, Tensor> original_layout(const std::string& prefix) {
  WeightStore store = WeightStore::open_dir(test::fixture("models/tiny-fp32/transformer"));
  std::map<std::string, Tensor> out;
  auto put = [&](std::string n, const Tensor& t) {
    auto rep = [&](const std::string& a, const std::string& b) {
      if (auto i = n.find(a); i != std::string::npos) n.replace(i, a.size(), b);
    };
    rep("all_final_layer.2-1.", "final_layer.");
    rep("all_x_embedder.2-1.", "x_embedder.");
    rep(".attention.to_out.0.", ".attention.out.");
    rep(".attention.norm_k.", ".attention.k_norm.");
    rep(".attention.norm_q.", ".attention.q_norm.");
    out[prefix + n] = t;
  };
  for (const std::string& name : store.names()) {
    const std::string q = ".attention.to_q.weight";
    if (name.find(".attention.to_k.weight") != std::string::npos ||
        name.find(".attention.to_v.weight") != std::string::npos)
      continue;
    if (name.size() > q.size() && name.compare(name.size() - q.size(), q.size(), q) == 0) {
      const std::string p = name.substr(0, name.size() - q.size());
      const Tensor a = store.get(name), b = store.get(p + ".attention.to_k.weight"),
                   c = store.get(p + ".attention.to_v.weight");
      Tensor qkv = Tensor::empty(DType::F32, {3 * a.dim(0), a.dim(1)});
      float* d = qkv.f32();
      for (const Tensor* t : {&a, &b, &c}) {
        const Tensor f = t->to(DType::F32);
        std::copy(f.f32(), f.f32() + f.numel(), d);
        d += f.numel();
      }
      put(p + ".attention.qkv.weight", qkv);
      continue;
    }
    put(name, store.get(name).to(DType::F32));
  }
  out[prefix + "norm_final.weight"] = test::randn({72}, 5);
  return out;
}

std::vector<Tensor> run_single(const ZImageTransformer2DModel& m) {
  SafeTensorsFile ref(test::fixture("ref/tiny-fp32/transformer.safetensors"));
  return m.forward({ref.get("batch2.x0").to(DType::F32), ref.get("batch2.x1").to(DType::F32)},
                   ref.get("batch2.t").to_vector(),
                   {ref.get("batch2.cap0").to(DType::F32), ref.get("batch2.cap1").to(DType::F32)});
}

}  // namespace

// Safetensors with "model.diffusion_model." keys and a GGUF with "diffusion_model." keys give
// the folder's outputs bit for bit.
TEST(TransformerSingleFile, OriginalLayoutEqualsFolder) {
  const std::string fix = test::fixture("models/tiny-fp32/transformer");
  const std::string dir = test::temp_dir("tsingle");
  save_safetensors(dir + "/orig.safetensors", original_layout("model.diffusion_model."));
  std::vector<test::GgufEntry> es;
  for (auto& [n, t] : original_layout("diffusion_model."))
    es.push_back({n, t.shape(), 0, std::string(static_cast<const char*>(t.raw()), size_t(t.nbytes()))});
  test::write_file(dir + "/orig.gguf", test::gguf_bytes(es));
  for (DType compute : {DType::F32, DType::BF16}) {
    const auto want = run_single(ZImageTransformer2DModel::load(fix, compute));
    for (const std::string f : {"/orig.safetensors", "/orig.gguf"}) {
      const auto got = run_single(ZImageTransformer2DModel::load(fix, compute, dir + f));
      ASSERT_EQ(got.size(), want.size());
      for (size_t j = 0; j < got.size(); ++j)
        EXPECT_EQ(rel_l2(got[j], want[j]), 0.0) << f << " " << dtype_name(compute);
    }
  }
  // a fused qkv whose rows are not 3 x dim
  auto bad = original_layout("");
  bad["layers.0.attention.qkv.weight"] = test::randn({215, 72}, 1);
  save_safetensors(dir + "/bad.safetensors", bad);
  try {
    ZImageTransformer2DModel::load(fix, DType::F32, dir + "/bad.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[transformer] weights: " + dir +
                                         "/bad.safetensors: fused 'layers.0.attention.qkv.weight' has shape [215, 72]"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace zimage
