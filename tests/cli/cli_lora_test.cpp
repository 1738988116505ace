// `zimage generate --lora FILE[:SCALE]` (repeatable): the LoRAs change the image, the PNG records
// them (A1111 `<lora:name:scale>` and "Lora hashes", the zimage JSON's "loras"), --from-png takes
// them again, and a quantized (GGUF) transformer takes a LoRA.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "util/gguf_writer.h"
#include "util/test_util.h"
#include "zimage/image.h"

namespace fs = std::filesystem;
using namespace zimage;

namespace {

class CliLora : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("cli_lora");
  void TearDown() override { fs::remove_all(dir); }
  int run(std::vector<std::string> a, std::string* err = nullptr) {
    a.insert(a.begin(), {ZIMAGE_CLI_PATH, "generate"});
    const test::CommandResult r = test::run_command(a, "timeout 300");
    if (err) *err = r.err;
    return r.code;
  }
  std::vector<std::string> base(const std::string& out) {
    return {"-m",      test::fixture("models/tiny-fp32"),
            "-p",      "a cat",
            "-W",      "32",
            "-H",      "32",
            "--seed",  "3",
            "--steps", "2",
            "-o",      out,
            "-q",      "--dtype",
            "float32", "--overwrite"};
  }
  std::vector<std::string> with(std::vector<std::string> a, std::vector<std::string> extra) {
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
};

}  // namespace

TEST_F(CliLora, LorasChangeTheImageAndAreRecorded) {
  const std::string peft = test::fixture("lora/tiny-fp32_peft.safetensors"),
                    kohya = test::fixture("lora/tiny-fp32_kohya.safetensors");
  ASSERT_EQ(run(base(dir + "/plain.png")), 0);
  ASSERT_EQ(run(with(base(dir + "/l.png"), {"--lora", peft + ":0.8", "--lora", kohya})), 0);
  EXPECT_NE(read_png(dir + "/plain.png").pixels, read_png(dir + "/l.png").pixels);
  auto meta = read_png_metadata(dir + "/l.png");
  const std::string& params = meta.at("parameters");
  EXPECT_EQ(params.rfind("a cat <lora:tiny-fp32_peft:0.8> <lora:tiny-fp32_kohya:1>\n", 0), 0u) << params;
  EXPECT_NE(params.find("Lora hashes: \"tiny-fp32_peft: "), std::string::npos) << params;
  auto j = nlohmann::json::parse(meta.at("zimage"));
  ASSERT_EQ(j["loras"].size(), 2u);
  EXPECT_EQ(j["loras"][0]["name"], "tiny-fp32_peft");
  EXPECT_EQ(j["loras"][0]["scale"].get<double>(), 0.8);
  EXPECT_EQ(j["loras"][0]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(j["loras"][1]["path"], kohya);
  EXPECT_EQ(j["prompt"], "a cat");
  // --from-png loads the same LoRAs again: the same image.
  ASSERT_EQ(run({"--from-png", dir + "/l.png", "-o", dir + "/again.png", "-q", "--overwrite"}), 0);
  EXPECT_EQ(read_png(dir + "/l.png").pixels, read_png(dir + "/again.png").pixels);
}

TEST_F(CliLora, BadLorasAreClearErrors) {
  std::string err;
  EXPECT_EQ(run(with(base(dir + "/x.png"), {"--lora", dir + "/missing.safetensors:0.5"}), &err), 1);
  EXPECT_NE(err.find("[lora] " + dir + "/missing.safetensors does not exist or is not a file"), std::string::npos)
      << err;
  // A LoRA made for another model (tiny-bf16 is 64 wide, tiny-fp32 72).
  EXPECT_EQ(run(with(base(dir + "/x.png"), {"--lora", test::fixture("lora/tiny-bf16_peft.safetensors")}), &err), 1);
  EXPECT_NE(err.find("do not fit the weight [72, 72]"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir + "/x.png"));
}

// A quantized transformer weight takes the LoRA as a run-time branch (merging would requantize).
TEST_F(CliLora, QuantizedTransformerTakesTheLoraAtRunTime) {
  const test::QuantizedTiny m = test::write_quantized_tiny_transformer(dir, test::quantize_linears);
  auto bf16 = [&](const std::string& out) {
    auto a = base(out);
    a[a.size() - 2] = "bfloat16";
    return with(a, {"--transformer", m.gguf});
  };
  ASSERT_EQ(run(bf16(dir + "/q.png")), 0);
  ASSERT_EQ(run(with(bf16(dir + "/ql.png"), {"--lora", test::fixture("lora/tiny-fp32_peft.safetensors") + ":0.8"})), 0);
  EXPECT_NE(read_png(dir + "/q.png").pixels, read_png(dir + "/ql.png").pixels);
}
