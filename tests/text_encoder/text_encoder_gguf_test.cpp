// The Qwen3 text encoder from a llama.cpp-named GGUF (token_embd, blk.N.attn_q, ..., output_norm,
// output) with quantized linear weights and a quantized token embedding equals the encoder from
// the same weights dequantized into a transformers-named safetensors file, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/gguf.h"
#include "core/safetensors.h"
#include "text_encoder/qwen3_text_encoder.h"
#include "util/gguf_writer.h"
#include "util/single_files.h"
#include "util/test_util.h"

namespace zimage {
namespace {
namespace fs = std::filesystem;

// transformers name -> llama.cpp name (test::llama_name); every tensor of the fixture has one.
std::string llama_name(const std::string& n) {
  const std::string m = test::llama_name(n);
  if (m == n) ADD_FAILURE() << "no llama.cpp name for " << n;
  return m;
}

}  // namespace

TEST(TextEncoderGguf, LlamaCppNamesQuantizedEqualsDequantized) {
  const std::string src = test::fixture("models/tiny-fp32/text_encoder");
  const std::string dir = test::temp_dir("tegguf");
  WeightStore store = WeightStore::open_dir(src);
  std::vector<test::GgufEntry> es;
  static const gguf::GgmlType k32[] = {gguf::GgmlType::Q8_0, gguf::GgmlType::Q5_0, gguf::GgmlType::Q4_0};
  int i = 0, quantized = 0;
  for (const std::string& name : store.names()) {
    const Tensor t = store.get(name).to(DType::F32);
    test::GgufEntry e{llama_name(name), t.shape(), 0, {}};
    if (t.ndim() == 2 && t.dim(1) % 32 == 0) {
      e.type = uint32_t(k32[i % 3]);
      e.bytes = test::random_blocks(e.type, t.numel(), uint32_t(200 + i), 2e-3f);
      ++i;
      ++quantized;
    } else {
      e.bytes.assign(static_cast<const char*>(t.raw()), size_t(t.nbytes()));
    }
    es.push_back(std::move(e));
  }
  es.push_back({"output.weight", {4, 32}, 0, std::string(4 * 32 * 4, '\0')});  // an LM head: ignored
  EXPECT_GE(quantized, 10);
  test::write_file(dir + "/te.gguf", test::gguf_bytes(es));
  // the same weights, dequantized, under transformers' names
  gguf::File f(dir + "/te.gguf");
  std::map<std::string, Tensor> dense;
  for (const std::string& name : store.names()) dense[name] = f.dequantize(llama_name(name));
  save_safetensors(dir + "/dense.safetensors", dense);
  const std::vector<int32_t> ids = {151644, 872, 198, 32, 8251, 151645, 198, 151644, 77091, 198};
  setenv("ZIMAGE_QUANT_COMPUTE", "dequant", 1);  // bf16: not the integer GEMM (ops/quantized.h)
  for (DType compute : {DType::F32, DType::BF16}) {
    const auto q = Qwen3TextEncoder::load(src, compute, dir + "/te.gguf");
    const auto d = Qwen3TextEncoder::load(src, compute, dir + "/dense.safetensors");
    const Tensor a = q.encode(ids, int64_t(ids.size())), b = d.encode(ids, int64_t(ids.size()));
    ASSERT_EQ(a.shape(), b.shape());
    EXPECT_EQ(rel_l2(a, b), 0.0) << dtype_name(compute);
    for (float v : a.to_vector()) ASSERT_TRUE(std::isfinite(v));
    // the file's weights were used, not the folder's
    EXPECT_GT(rel_l2(a, Qwen3TextEncoder::load(src, compute).encode(ids, int64_t(ids.size()))), 0.1);
  }
  unsetenv("ZIMAGE_QUANT_COMPUTE");
  // the integer GEMM (the bf16 default): near the dequantize path (see TransformerGguf's bound)
  const auto q = Qwen3TextEncoder::load(src, DType::BF16, dir + "/te.gguf");
  const auto d = Qwen3TextEncoder::load(src, DType::BF16, dir + "/dense.safetensors");
  const double err = rel_l2(q.encode(ids, int64_t(ids.size())), d.encode(ids, int64_t(ids.size())));
  std::printf("  integer GEMM vs dequantized weights, bf16: rel L2 %.3g\n", err);
  EXPECT_GT(err, 0.0);
  EXPECT_LT(err, 3e-2);
  fs::remove_all(dir);
}

}  // namespace zimage
