// `zimage generate --transformer FILE`: the transformer's weights from one .safetensors or .gguf
// file instead of the model folder's. The folder's own file gives the folder's image; a GGUF with
// quantized linear weights gives the image of the same weights dequantized into a safetensors
// file (bf16 compute on the dequantize path, ZIMAGE_QUANT_COMPUTE=dequant: the quantized GEMM
// tiles equal the dense bf16 weights exactly); the default integer GEMM gives a nearby image.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "util/gguf_writer.h"
#include "util/test_util.h"
#include "zimage/image.h"

namespace fs = std::filesystem;
using namespace zimage;

namespace {

class CliWeightsFile : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("cli_wfile");
  std::string env;  // "NAME=value " put before the command
  std::string model = test::fixture("models/tiny-fp32");
  void TearDown() override { fs::remove_all(dir); }
  int run(std::vector<std::string> extra, const std::string& out, std::string* err = nullptr) {
    std::vector<std::string> a{"generate", "-m", model,     "-p", "a cat", "-W", "64", "-H",      "64",
                               "--seed",   "3",  "--steps", "2",  "-o",    out,  "-q", "--dtype", "bfloat16"};
    a.insert(a.end(), extra.begin(), extra.end());
    a.insert(a.begin(), ZIMAGE_CLI_PATH);
    const test::CommandResult r = test::run_command(a, env + "timeout 300");
    if (err) *err = r.err;
    return r.code;
  }
  std::vector<uint8_t> pixels(const std::string& png) { return read_png(png).pixels; }
};

}  // namespace

TEST_F(CliWeightsFile, FolderFileGivesTheFolderImage) {
  ASSERT_EQ(run({}, dir + "/a.png"), 0);
  ASSERT_EQ(run({"--transformer", test::fixture("models/tiny-fp32/transformer/diffusion_pytorch_model.safetensors")},
                dir + "/b.png"),
            0);
  EXPECT_EQ(pixels(dir + "/a.png"), pixels(dir + "/b.png"));
}

TEST_F(CliWeightsFile, QuantizedGgufEqualsDequantizedSafetensors) {
  const test::QuantizedTiny m = test::write_quantized_tiny_transformer(dir, test::quantize_linears);
  ASSERT_EQ(run({"--transformer", m.gguf}, dir + "/i.png"), 0);  // the integer GEMM (the bf16 default)
  env = "ZIMAGE_QUANT_COMPUTE=dequant ";
  ASSERT_EQ(run({"--transformer", m.gguf}, dir + "/q.png"), 0);
  ASSERT_EQ(run({"--transformer", m.dense_dir + "/diffusion_pytorch_model.safetensors"}, dir + "/d.png"), 0);
  ASSERT_EQ(run({}, dir + "/f.png"), 0);
  const auto q = pixels(dir + "/q.png"), d = pixels(dir + "/d.png"), f = pixels(dir + "/f.png");
  ASSERT_EQ(q.size(), d.size());
  int maxd = 0, ndiff = 0;
  for (size_t i = 0; i < q.size(); ++i) {
    maxd = std::max(maxd, std::abs(int(q[i]) - int(d[i])));
    ndiff += q[i] != d[i];
  }
  std::printf("  gguf vs dequantized: %d of %zu bytes differ, max %d\n", ndiff, q.size(), maxd);
  EXPECT_EQ(q, d);
  EXPECT_NE(q, f);  // the file's weights were used, not the folder's
  const auto in = pixels(dir + "/i.png");
  ASSERT_EQ(in.size(), q.size());
  double se = 0;
  for (size_t i = 0; i < q.size(); ++i) se += double(int(in[i]) - int(q[i])) * (int(in[i]) - int(q[i]));
  const double psnr = se ? 10 * std::log10(255.0 * 255.0 * double(q.size()) / se) : 99;
  std::printf("  integer GEMM vs dequantize path: PSNR %.1f dB\n", psnr);
  EXPECT_NE(in, q);
  EXPECT_GT(psnr, 30.0);
}

TEST_F(CliWeightsFile, BadFileIsAnError) {
  std::string err;
  EXPECT_EQ(run({"--transformer", dir + "/missing.gguf"}, dir + "/x.png", &err), 1);
  EXPECT_NE(err.find("[transformer] gguf: " + dir + "/missing.gguf"), std::string::npos) << err;
  test::write_file(dir + "/bad.gguf", std::string("GGUF\x03\0\0\0", 8));
  EXPECT_EQ(run({"--transformer", dir + "/bad.gguf"}, dir + "/x.png", &err), 1);
  EXPECT_NE(err.find("[transformer] gguf: " + dir + "/bad.gguf: truncated"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir + "/x.png"));
}

TEST_F(CliWeightsFile, TextEncoderFile) {
  ASSERT_EQ(run({}, dir + "/a.png"), 0);
  ASSERT_EQ(run({"--text-encoder", test::fixture("models/tiny-fp32/text_encoder/model.safetensors")}, dir + "/b.png"),
            0);
  EXPECT_EQ(pixels(dir + "/a.png"), pixels(dir + "/b.png"));
  std::string err;
  test::write_file(dir + "/te.gguf", std::string("GGUF\x03\0\0\0", 8));
  EXPECT_EQ(run({"--text-encoder", dir + "/te.gguf"}, dir + "/x.png", &err), 1);
  EXPECT_NE(err.find("[text_encoder] gguf: " + dir + "/te.gguf: truncated"), std::string::npos) << err;
}

// --vae FILE: the tiny VAE in the original LDM / Flux layout (tests/fixtures/single_file) gives the
// folder's image; a file missing keys is an error naming them.
TEST_F(CliWeightsFile, VaeFileInLdmLayout) {
  ASSERT_EQ(run({}, dir + "/a.png"), 0);
  ASSERT_EQ(run({"--vae", test::fixture("single_file/vae_ldm.safetensors")}, dir + "/b.png"), 0);
  EXPECT_EQ(pixels(dir + "/a.png"), pixels(dir + "/b.png"));
  std::string err;
  EXPECT_EQ(run({"--vae", test::fixture("fp8/codes.safetensors")}, dir + "/x.png", &err), 1);
  EXPECT_NE(err.find("[vae] weights: " + test::fixture("fp8/codes.safetensors") +
                     ": missing tensor 'encoder.conv_in.weight' (196 of the 196 expected tensors are missing: "),
            std::string::npos)
      << err;
  EXPECT_FALSE(fs::exists(dir + "/x.png"));
}

// An fp8 transformer file (the tiny-bf16 transformer as float8_e4m3fn, ComfyUI layout) runs
// through the CLI; its parity with diffusers is tests/pipeline/fp8_test.cpp.
TEST_F(CliWeightsFile, Fp8TransformerFile) {
  model = test::fixture("models/tiny-bf16");
  ASSERT_EQ(run({}, dir + "/a.png"), 0);
  ASSERT_EQ(run({"--transformer", test::fixture("fp8/transformer_fp8.safetensors")}, dir + "/b.png"), 0);
  EXPECT_NE(pixels(dir + "/a.png"), pixels(dir + "/b.png"));
}
