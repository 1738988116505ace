// `zimage generate` without -m (issue 15's Done-when): a GGUF transformer (original key layout,
// Q8_0), a GGUF Qwen3 text encoder carrying its tokenizer, a single-file VAE and a LoRA give the
// same image, bit for bit, as the model folder whose configs describe those files with the same
// files as overrides; the PNG records the files and --from-png regenerates the image.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "util/single_files.h"
#include "util/test_util.h"
#include "zimage/image.h"

namespace fs = std::filesystem;
using namespace zimage;

namespace {

class CliSingleFile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    files_ = new test::SingleFiles(test::write_single_files(test::temp_dir("cli_single")));
  }
  static void TearDownTestSuite() {
    fs::remove_all(files_->dir);
    delete files_;
  }
  static test::SingleFiles* files_;
  const test::SingleFiles& f() const { return *files_; }
  test::CommandResult run(std::vector<std::string> args) {
    args.insert(args.begin(), {ZIMAGE_CLI_PATH, "generate"});
    return test::run_command(args, "timeout 300");
  }
  std::vector<std::string> common(const std::string& out) {
    return {"-p", "a red fox in the snow", "-W", "64", "-H", "64", "--seed", "5", "--steps", "2", "-o", out, "-q"};
  }
  std::vector<std::string> files_args(bool lora = true) {
    std::vector<std::string> a{"--transformer", f().transformer, "--text-encoder", f().text_encoder, "--vae", f().vae};
    if (lora) a.insert(a.end(), {"--lora", f().lora + ":0.8"});
    return a;
  }
  static std::vector<std::string> cat(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }
  std::vector<uint8_t> pixels(const std::string& png) { return read_png(png).pixels; }
};
test::SingleFiles* CliSingleFile::files_ = nullptr;

}  // namespace

TEST_F(CliSingleFile, NoModelEqualsModelFolderWithOverridesAndRegenerates) {
  const std::string a = f().dir + "/a.png", b = f().dir + "/b.png", c = f().dir + "/c.png", n = f().dir + "/n.png";
  test::CommandResult r = run(cat(files_args(), common(a)));  // the Done-when command
  ASSERT_EQ(r.code, 0) << r.err;
  r = run(cat(cat({"-m", f().model}, files_args()), common(b)));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto pa = pixels(a);
  EXPECT_EQ(pa, pixels(b));
  ASSERT_EQ(pa.size(), 64u * 64u * 3u);
  EXPECT_NE(*std::min_element(pa.begin(), pa.end()), *std::max_element(pa.begin(), pa.end()));  // not a flat image
  // the LoRA ran: without it the image differs
  r = run(cat(files_args(/*lora=*/false), common(n)));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(pa, pixels(n));
  // the PNG records the files (and no model); --from-png loads them again
  const auto meta = read_png_metadata(a);
  const nlohmann::json z = nlohmann::json::parse(meta.at("zimage"));
  EXPECT_EQ(z["model"], "");
  EXPECT_EQ(z["transformer_file"], f().transformer);
  EXPECT_EQ(z["text_encoder_file"], f().text_encoder);
  EXPECT_EQ(z["vae_file"], f().vae);
  EXPECT_NE(meta.at("parameters").find("Model: z,"), std::string::npos) << meta.at("parameters");
  r = run({"--from-png", a, "-o", c, "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(pa, pixels(c));
}

TEST_F(CliSingleFile, ErrorsSayWhatToPass) {
  const std::string out = f().dir + "/e.png";
  test::CommandResult r = run(common(out));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[generate] no model: give -m/--model, or every component as a single file (--transformer, "
                       "--text-encoder, --vae)"),
            std::string::npos)
      << r.err;
  r = run(cat({"--transformer", f().transformer, "--text-encoder", f().text_encoder}, common(out)));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[generate] no model (-m): every component must then be a single file; missing --vae"),
            std::string::npos)
      << r.err;
  // a .safetensors text encoder carries no tokenizer: --tokenizer DIR
  const std::string te = test::fixture("models/tiny-fp32/text_encoder/model.safetensors");
  r = run(cat({"--transformer", f().transformer, "--text-encoder", te, "--vae", f().vae}, common(out)));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no tokenizer: the text encoder '" + te + "' is not a GGUF file"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--tokenizer DIR"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  r = run(cat({"--transformer", f().transformer, "--text-encoder", te, "--vae", f().vae, "--tokenizer",
               test::fixture("qwen3_tokenizer")},
              common(out)));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out));
}
