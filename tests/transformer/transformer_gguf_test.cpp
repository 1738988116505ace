// The transformer from a GGUF file with quantized linear weights (kept quantized, ops/quantized.h)
// equals, bit for bit, the transformer from the same weights dequantized into a float32
// safetensors folder (each of the tiny model's matrices is one tile, see ops/quantized.h).
// The GGUF is written here from the tiny fp32 fixture: every 2-D linear weight whose rows are a
// whole number of blocks becomes a block type (Q8_0/Q5_0/Q4_0 for 32-multiples, Q6_K/Q5_K/Q4_K/
// Q3_K/Q2_K for 256-multiples) filled with random, well-scaled blocks; the rest stays F32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <filesystem>
#include <map>

#include "core/gguf.h"
#include "core/safetensors.h"
#include "transformer/transformer_z_image.h"
#include "util/gguf_writer.h"
#include "util/test_util.h"

namespace zimage {
namespace {
namespace fs = std::filesystem;

void compare(const test::QuantizedTiny& m, DType compute) {
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
  test::write_file(dir + "/trunc.gguf", test::gguf_bytes({{"x_pad_token", {1, 72}, 0, std::string(288, '\0')}}).substr(0, 60));
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
