// The CLI on bad input: nonzero exit, one clear line on stderr, no file written.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <array>
#include <cstdio>
#include <filesystem>

#include "util/test_util.h"
#include "zimage/image.h"

namespace fs = std::filesystem;
using namespace zimage;

namespace {

using CliResult = test::CommandResult;

CliResult run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), ZIMAGE_CLI_PATH);
  return test::run_command(args);
}

class CliBadInput : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("cli");
  std::string model = test::fixture("models/tiny-fp32");
  void TearDown() override { fs::remove_all(dir); }
  // Runs generate with extra args and expects failure mentioning `what`, one line, no output file.
  void expect_fail(std::vector<std::string> extra, const std::string& what, const std::string& m = "") {
    std::vector<std::string> args{"generate", "-m", m.empty() ? model : m, "-p", "a cat", "-W", "64", "-H", "64", "-s",
                                  "2",        "-o", dir + "/out.png",      "-q"};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = run_cli(args);
    EXPECT_NE(r.code, 0) << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    for (auto& e : fs::directory_iterator(dir)) ADD_FAILURE() << "unexpected file " << e.path();
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
  CliResult r = run_cli({"generate", "-m", m, "-p", "x", "-W", "64", "-H", "64", "-o", dir + "/out.png", "-q"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("missing the 'vae/' folder"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/out.png"));
}
TEST_F(CliBadInput, UnknownAttentionBackend) {
  expect_fail({"--attention", "warp-drive"}, "unknown attention backend 'warp-drive'");
}
TEST_F(CliBadInput, UnknownVaeTiling) {
  expect_fail({"--vae-tiling", "sometimes"}, "tiling 'sometimes' is not one of auto, on, off");
}
TEST_F(CliBadInput, UnknownVaeTileMode) { expect_fail({"--vae-tile-mode", "fancy"}, "tile mode 'fancy'"); }
TEST_F(CliBadInput, VaeTileTooSmall) {
  expect_fail({"--vae-tile-size", "3"}, "tile size 3 latents is below the seamless minimum of 8");
}
TEST_F(CliBadInput, OutputFolderMissing) {
  CliResult r =
      run_cli({"generate", "-m", model, "-p", "x", "-W", "64", "-H", "64", "-o", dir + "/nope/out.png", "-q"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/nope"));
}
TEST_F(CliBadInput, UnknownOption) {
  CliResult r = run_cli({"generate", "--frobnicate"});
  EXPECT_NE(r.code, 0);
}
// Thread counts (issue #12 item 3): bounded, negative refused, in the library too (see
// tests/pipeline). 100000 crashed inside libgomp; -5 silently meant all cores.
TEST_F(CliBadInput, TooManyThreads) { expect_fail({"-t", "100000"}, "num_threads must be 0 (all cores) or 1.."); }
TEST_F(CliBadInput, NegativeThreads) { expect_fail({"-t", "-5"}, "hardware threads), got -5"); }
// Seeds above 2^64-1 were clamped to 2^64-1 (item 7).
TEST_F(CliBadInput, SeedAbove64Bits) {
  expect_fail({"--seed", "18446744073709551616"},
              "[generate] --seed '18446744073709551616' is not a seed: give an integer in [0, 18446744073709551615], "
              "or -1 for a random seed");
}
TEST_F(CliBadInput, SeedNotAnInteger) { expect_fail({"--seed", "1,2.5"}, "--seed '2.5' is not a seed"); }
// The "use <nearest multiple of 16>" hint overflowed to -2147483648 (item 8).
TEST_F(CliBadInput, WidthHintDoesNotOverflow) {
  expect_fail({"-W", "2147483647"}, "[pipeline] width must be divisible by 16 (got 2147483647); use 8192");
}
TEST_F(CliBadInput, HeightHintIsTheNearestMultiple) { expect_fail({"-H", "1001"}, "(got 1001); use 1008"); }
// float16 computed in float32 while the PNG said float16.
TEST_F(CliBadInput, Float16IsRefused) {
  expect_fail({"--dtype", "float16"},
              "[from_pretrained] torch_dtype 'float16' is not supported: no backend of this build computes "
              "in float16; use bfloat16 (same memory, float32 range) or float32");
}
TEST_F(CliBadInput, Float16VaeIsRefused) { expect_fail({"--vae-dtype", "fp16"}, "vae_dtype 'fp16' is not supported"); }
TEST_F(CliBadInput, UnknownDtype) {
  expect_fail({"--dtype", "int8"}, "torch_dtype 'int8' is not a dtype (use bfloat16 or float32)");
}
// An output path that exists but is not a regular file was skipped (numbered out-1.png, exit 0),
// or replaced with --overwrite; `-o /dev/full` wrote /dev/full-1.
TEST_F(CliBadInput, OutputIsAPipe) {
  for (bool overwrite : {false, true}) {
    ASSERT_EQ(::mkfifo((dir + "/out.png").c_str(), 0644), 0);
    std::vector<std::string> args{"generate", "-m", model, "-p", "a cat",          "-W", "64", "-H",
                                  "64",       "-s", "1",   "-o", dir + "/out.png", "-q"};
    if (overwrite) args.push_back("--overwrite");
    CliResult r = run_cli(args);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find("[output] output '" + dir + "/out.png' exists and is not a regular file"), std::string::npos)
        << r.err;
    EXPECT_TRUE(fs::is_fifo(dir + "/out.png"));
    EXPECT_FALSE(fs::exists(dir + "/out-1.png"));
    fs::remove(dir + "/out.png");
  }
}
// --save-latents failing after the PNG was written left the PNG: now every output is staged and
// renamed at the end, so a failure leaves none. As root, /sys passes the early writability check
// (access) but refuses new files, so the failure comes after the generation; as another user the
// early check refuses it (also no file).
TEST_F(CliBadInput, FailingSaveLatentsLeavesNoPng) {
  if (!fs::is_directory("/sys")) GTEST_SKIP() << "no /sys";
  expect_fail({"--num-images", "2", "--save-latents", "/sys/zimage-cli-test.safetensors"}, "/sys");
  EXPECT_FALSE(fs::exists("/sys/zimage-cli-test.safetensors"));
}
TEST_F(CliBadInput, SaveLatentsExistingNeedsOverwrite) {
  test::write_file(dir + "/lat.safetensors", "keep");
  CliResult r = run_cli({"generate", "-m", model, "-p", "a cat", "-W", "64", "-H", "64", "-s", "1", "-o",
                         dir + "/out.png", "-q", "--save-latents", dir + "/lat.safetensors"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("exists (give --overwrite to replace it)"), std::string::npos) << r.err;
  EXPECT_EQ(test::read_file(dir + "/lat.safetensors"), "keep");
  EXPECT_FALSE(fs::exists(dir + "/out.png"));
}
// A NUL in a prompt (only possible through --from-png) failed when the PNG was written, after the
// whole generation; now it fails before the model is loaded (the model path here does not exist).
TEST_F(CliBadInput, NulInPromptFailsBeforeLoading) {
  PngMetadata meta;
  meta.zimage = {{"prompt", std::string("a\0b", 3)}, {"width", 64}, {"height", 64}, {"num_inference_steps", 1}};
  write_png(dir + "/in.png", Image{16, 16, 3, std::vector<uint8_t>(16 * 16 * 3)}, meta);
  CliResult r =
      run_cli({"generate", "-m", dir + "/no-such-model", "--from-png", dir + "/in.png", "-o", dir + "/out.png", "-q"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[generate] prompt contains a NUL character (at byte 1), which PNG text cannot hold"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir + "/out.png"));
}
TEST_F(CliBadInput, InvalidUtf8PromptFailsBeforeLoading) {
  CliResult r = run_cli(
      {"generate", "-m", dir + "/no-such-model", "-p", "ok", "-n", "bad \xff", "-g", "2", "-o", dir + "/out.png"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[generate] negative prompt is not valid UTF-8"), std::string::npos) << r.err;
}

// One exit-code table (README, docs/DESIGN.md, --help): 0 ok, 1 bad input or usage (option parse
// errors included; CLI11's own codes were 104-109), 2 out of memory, 3 internal error.
TEST_F(CliBadInput, ExitCodes) {
  EXPECT_EQ(run_cli({"generate", "--frobnicate"}).code, 1);
  EXPECT_EQ(run_cli({"generate", "-m", model, "-p", "x", "-W", "sixty"}).code, 1);
  EXPECT_EQ(run_cli({}).code, 1);
  EXPECT_EQ(run_cli({"info"}).code, 1);
  EXPECT_EQ(run_cli({"generate", "--from-png", dir + "/missing.png"}).code, 1);
  EXPECT_EQ(run_cli({"generate", "-m", model, "-p", "x", "-W", "1000"}).code, 1);
  EXPECT_EQ(run_cli({"--help"}).code, 0);
  EXPECT_EQ(run_cli({"generate", "--help"}).code, 0);
  EXPECT_EQ(run_cli({"--version"}).code, 0);
}
TEST_F(CliBadInput, HelpDocumentsExitCodesAndSeedMinusOne) {
  const CliResult r = run_cli({"generate", "--help"});
  ASSERT_EQ(r.code, 0);
  const std::string& help = r.out;
  EXPECT_NE(help.find("Exit codes: 0 success; 1 bad input or usage"), std::string::npos) << help;
  EXPECT_NE(help.find("-1 (the default) = a random seed"), std::string::npos) << help;
}
TEST_F(CliBadInput, Version) {
  const CliResult r = run_cli({"--version"});
  ASSERT_EQ(r.code, 0);
  const std::string& v = r.out;
  EXPECT_EQ(v.rfind("zimage.cpp " ZIMAGE_VERSION "\n", 0), 0u) << v;
  EXPECT_NE(v.find("built with "), std::string::npos) << v;
  EXPECT_NE(v.find("CUDA backend: "), std::string::npos) << v;
}
