// The CLI on bad input: nonzero exit, one clear line on stderr, no file written.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>

#include "util/test_util.h"

namespace fs = std::filesystem;
using namespace zimage;

namespace {

struct CliResult {
  int code;
  std::string err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

CliResult run_cli(const std::vector<std::string>& args, const std::string& errfile) {
  std::string cmd = std::string(ZIMAGE_CLI_PATH);
  for (auto& a : args) cmd += " " + quote(a);
  cmd += " >/dev/null 2>" + quote(errfile);
  int st = std::system(cmd.c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128, test::read_file(errfile)};
}

class CliBadInput : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("cli");
  std::string model = test::fixture("models/tiny-fp32");
  void TearDown() override { fs::remove_all(dir); }
  // Runs generate with extra args and expects failure mentioning `what`, one line, no output file.
  void expect_fail(std::vector<std::string> extra, const std::string& what, const std::string& m = "") {
    std::vector<std::string> args{"generate", "-m", m.empty() ? model : m, "-p", "a cat", "-W", "64", "-H", "64",
                                  "-s", "2", "-o", dir + "/out.png", "-q"};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = run_cli(args, dir + "/err.txt");
    EXPECT_NE(r.code, 0) << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    for (auto& e : fs::directory_iterator(dir))
      EXPECT_EQ(e.path().filename(), "err.txt") << "unexpected file " << e.path();
  }
};

}  // namespace

TEST_F(CliBadInput, HeightNotMultipleOf16) { expect_fail({"-H", "1000"}, "height must be divisible by 16"); }
TEST_F(CliBadInput, WidthZero) { expect_fail({"-W", "0"}, "width must be positive"); }
TEST_F(CliBadInput, NegativeSteps) { expect_fail({"-s", "-3"}, "num_inference_steps must be at least 1, got -3"); }
TEST_F(CliBadInput, NanGuidance) { expect_fail({"-g", "nan"}, "guidance"); }
TEST_F(CliBadInput, PromptAndSeedListsDiffer) {
  expect_fail({"-p", "a dog", "--seed", "1,2,3"}, "3 generators (seeds) for 2 images");
}
TEST_F(CliBadInput, MissingModelFolder) { expect_fail({}, "does not exist", dir + "/no-such-model"); }
TEST_F(CliBadInput, FolderMissingVae) {
  std::string m = dir + "/model";
  fs::create_directories(m);
  for (auto c : {"scheduler", "text_encoder", "tokenizer", "transformer"})
    fs::create_directory_symlink(fs::absolute(model + "/" + c), m + "/" + c);
  fs::copy_file(model + "/model_index.json", m + "/model_index.json");
  CliResult r = run_cli({"generate", "-m", m, "-p", "x", "-W", "64", "-H", "64", "-o", dir + "/out.png", "-q"}, dir + "/err.txt");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("missing the 'vae/' folder"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/out.png"));
}
TEST_F(CliBadInput, UnknownAttentionBackend) { expect_fail({"--attention", "warp-drive"}, "unknown attention backend 'warp-drive'"); }
TEST_F(CliBadInput, UnknownVaeTiling) { expect_fail({"--vae-tiling", "sometimes"}, "tiling 'sometimes' is not one of auto, on, off"); }
TEST_F(CliBadInput, UnknownVaeTileMode) { expect_fail({"--vae-tile-mode", "fancy"}, "tile mode 'fancy'"); }
TEST_F(CliBadInput, VaeTileTooSmall) { expect_fail({"--vae-tile-size", "3"}, "tile size 3 latents is below the seamless minimum of 8"); }
TEST_F(CliBadInput, OutputFolderMissing) {
  CliResult r = run_cli({"generate", "-m", model, "-p", "x", "-W", "64", "-H", "64", "-o", dir + "/nope/out.png", "-q"}, dir + "/err.txt");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/nope"));
}
TEST_F(CliBadInput, UnknownOption) {
  CliResult r = run_cli({"generate", "--frobnicate"}, dir + "/err.txt");
  EXPECT_NE(r.code, 0);
}
