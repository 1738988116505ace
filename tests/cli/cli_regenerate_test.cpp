// `zimage generate --from-png`: every value read from a PNG is checked (type, range, integrality),
// each image of a batch regenerates itself, A1111-only PNGs are read, and what the metadata
// records (seed -1, Model: of hub ids).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "util/test_util.h"
#include "zimage/image.h"

namespace fs = std::filesystem;
using namespace zimage;
using json = nlohmann::json;

namespace {

using CliRun = test::CommandResult;

class CliRegenerate : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("cliregen");
  std::string model = test::fixture("models/tiny-fp32");
  void TearDown() override { fs::remove_all(dir); }

  // Runs `zimage generate <args>` (float32, quiet) with extra environment `env` ("" for none).
  CliRun generate(const std::vector<std::string>& args, const std::string& env = "") {
    std::vector<std::string> a{ZIMAGE_CLI_PATH, "generate", "-q", "--dtype", "float32"};
    a.insert(a.end(), args.begin(), args.end());
    return test::run_command(a, env);
  }
  json zimage_json(const std::string& png) { return json::parse(read_png_metadata(png).at("zimage")); }
  std::string infotext(const std::string& png) { return read_png_metadata(png).at("parameters"); }

  // A PNG whose zimage JSON is a valid tiny-model generation with `key` set to `value`.
  std::string png_with(const std::string& key, const json& value) {
    json j = {{"prompt", "a cat"},        {"width", 64}, {"height", 64},
              {"num_inference_steps", 1}, {"seed", 3},   {"model", model}};
    j[key] = value;
    PngMetadata meta;
    meta.zimage = j;
    std::string path = dir + "/in.png";
    write_png(path, Image{16, 16, 3, std::vector<uint8_t>(16 * 16 * 3)}, meta);
    return path;
  }
  // --from-png on png_with(key, value) fails with exit 1 naming the PNG and `expected`, writing nothing.
  void expect_png_error(const std::string& key, const json& value, const std::string& expected) {
    std::string png = png_with(key, value);
    CliRun r = generate({"--from-png", png, "-o", dir + "/out.png"});
    EXPECT_EQ(r.code, 1) << key << ": " << r.err;
    EXPECT_NE(r.err.find("zimage: error: [from-png] " + png + ": " + expected), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir + "/out.png"));
    fs::remove(dir + "/out.png");
  }
};

}  // namespace

// Item 5: wrong JSON types were "internal error", exit 3, naming neither file nor key.
TEST_F(CliRegenerate, WrongTypesNameFileAndKey) {
  expect_png_error("prompt", 5, "'prompt' is 5, expected a string");
  expect_png_error("negative_prompt", json::array({"ugly"}), "'negative_prompt' is [\"ugly\"], expected a string");
  expect_png_error("seed", "42", "'seed' is \"42\", expected an integer in [0, 18446744073709551615]");
  expect_png_error("cfg_normalization", "yes", "'cfg_normalization' is \"yes\", expected true or false");
  expect_png_error("guidance_scale", "high", "'guidance_scale' is \"high\", expected a finite number");
  expect_png_error("vae_dtype", 16, "'vae_dtype' is 16, expected a string");
  expect_png_error("model", nullptr, "'model' is null, expected a string");
}

// Item 6: numbers were silently truncated or wrapped.
TEST_F(CliRegenerate, OutOfRangeAndFractionalNumbersAreErrors) {
  expect_png_error("width", 4294967360ull, "'width' is 4294967360, expected an integer in [1, 2147483647]");
  expect_png_error("num_inference_steps", 4294967298ull,
                   "'num_inference_steps' is 4294967298, expected an integer in [1, 2147483647]");
  expect_png_error("seed", 1.5e30, "'seed' is 1.5e+30, expected an integer in [0, 18446744073709551615]");
  expect_png_error("seed", -1, "'seed' is -1, expected an integer in [0, 18446744073709551615]");
  expect_png_error("width", 64.9, "'width' is 64.9, expected an integer in [1, 2147483647]");
  expect_png_error("width", 1e10, "'width' is 10000000000.0, expected an integer in [1, 2147483647]");
  expect_png_error("height", -64, "'height' is -64, expected an integer in [1, 2147483647]");
  expect_png_error("vae_tile_size", -1, "'vae_tile_size' is -1, expected an integer in [0, 2147483647]");
  expect_png_error("noise_index", 2, "'noise_index' is 2, expected an integer in [0, 0]");
}

TEST_F(CliRegenerate, IntegralFloatsAreAccepted) {
  std::string png = png_with("width", 64.0);
  CliRun r = generate({"--from-png", png, "-o", dir + "/out.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_png(dir + "/out.png").width, 64);
}

TEST_F(CliRegenerate, NotAnObject) {
  PngMetadata meta;
  meta.text = {{"zimage", "[1, 2]"}};
  write_png(dir + "/in.png", Image{16, 16, 3, std::vector<uint8_t>(16 * 16 * 3)}, meta);
  CliRun r = generate({"--from-png", dir + "/in.png", "-m", model, "-o", dir + "/out.png"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[from-png] " + dir + "/in.png: zimage parameters are not a JSON object"), std::string::npos)
      << r.err;
}

// A PNG's zimage JSON is untrusted: deep nesting is refused while parsing (before, a value nested
// 100,000 deep was built and then walked recursively by dump() in the wrong-type error).
TEST_F(CliRegenerate, DeeplyNestedJsonIsRefused) {
  PngMetadata meta;
  meta.text = {{"zimage", "{\"prompt\": " + std::string(100000, '[') + std::string(100000, ']') + "}"}};
  write_png(dir + "/in.png", Image{16, 16, 3, std::vector<uint8_t>(16 * 16 * 3)}, meta);
  CliRun r = generate({"--from-png", dir + "/in.png", "-m", model, "-o", dir + "/out.png"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[from-png] " + dir + "/in.png: zimage parameters: JSON nested deeper than 128 levels"),
            std::string::npos)
      << r.err;
}

// Item 11: every image of a batch recorded the same seed and --from-png rebuilt image 0.
TEST_F(CliRegenerate, EachImageOfAOneSeedBatchRegeneratesItself) {
  ASSERT_EQ(generate({"-m", model, "-p", "a cat", "-W", "64", "-H", "48", "-s", "2", "--num-images", "2", "--seed", "7",
                      "-o", dir + "/a.png"})
                .code,
            0);
  const std::vector<std::string> outs{dir + "/a.png", dir + "/a-1.png"};
  EXPECT_NE(read_png(outs[0]).pixels, read_png(outs[1]).pixels);
  EXPECT_NE(zimage_json(outs[0]), zimage_json(outs[1]));
  EXPECT_EQ(zimage_json(outs[1])["seed"], 7);
  EXPECT_EQ(zimage_json(outs[1])["noise_batch_size"], 2);
  EXPECT_EQ(zimage_json(outs[1])["noise_index"], 1);
  for (size_t i = 0; i < outs.size(); ++i) {
    std::string re = dir + "/re" + std::to_string(i) + ".png";
    CliRun r = generate({"--from-png", outs[i], "-o", re});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(read_png(re).pixels, read_png(outs[i]).pixels) << outs[i];
    // The regenerated image's metadata regenerates it too.
    EXPECT_EQ(zimage_json(re)["noise_index"], zimage_json(outs[i])["noise_index"]);
    EXPECT_EQ(zimage_json(re)["noise_batch_size"], 2);
  }
  // One image of the batch cannot be regenerated as a batch.
  CliRun r = generate({"--from-png", outs[1], "--num-images", "2", "-o", dir + "/x.png"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("is image 1 of a batch of 2 drawn from one seed"), std::string::npos) << r.err;
}

TEST_F(CliRegenerate, EachImageOfASeedListRegeneratesItself) {
  ASSERT_EQ(
      generate(
          {"-m", model,    "-p",     "a cat", "-p", "a dog on a red sofa", "-W", "48", "-H", "64", "-s", "2", "-g", "2",
           "-n", "blurry", "--seed", "11,12", "-o", dir + "/b.png"})
          .code,
      0);
  const std::vector<std::string> outs{dir + "/b.png", dir + "/b-1.png"};
  EXPECT_EQ(zimage_json(outs[1])["seed"], 12);
  EXPECT_EQ(zimage_json(outs[1])["prompt"], "a dog on a red sofa");
  EXPECT_EQ(zimage_json(outs[1])["noise_batch_size"], 1);
  for (size_t i = 0; i < outs.size(); ++i) {
    std::string re = dir + "/re" + std::to_string(i) + ".png";
    ASSERT_EQ(generate({"--from-png", outs[i], "-o", re}).code, 0);
    EXPECT_EQ(read_png(re).pixels, read_png(outs[i]).pixels) << outs[i];
  }
}

TEST_F(CliRegenerate, EachPromptOfAOneSeedBatchRegeneratesItself) {
  ASSERT_EQ(generate({"-m", model, "-p", "a cat", "-p", "a dog", "-W", "64", "-H", "64", "-s", "2", "--seed", "5", "-o",
                      dir + "/c.png"})
                .code,
            0);
  const std::vector<std::string> outs{dir + "/c.png", dir + "/c-1.png"};
  EXPECT_EQ(zimage_json(outs[1])["prompt"], "a dog");
  for (size_t i = 0; i < outs.size(); ++i) {
    std::string re = dir + "/re" + std::to_string(i) + ".png";
    ASSERT_EQ(generate({"--from-png", outs[i], "-o", re}).code, 0);
    EXPECT_EQ(read_png(re).pixels, read_png(outs[i]).pixels) << outs[i];
  }
}

// A PNG with only the A1111 "parameters" text was "not written by zimage".
TEST_F(CliRegenerate, ReadsA1111Parameters) {
  PngMetadata meta;
  meta.text = {{"parameters",
                "a red fox\nNegative prompt: ugly\nSteps: 2, Sampler: Euler, CFG scale: 1.5, Seed: 42, "
                "Size: 48x64, Model: tiny-fp32"}};
  write_png(dir + "/a1111.png", Image{16, 16, 3, std::vector<uint8_t>(16 * 16 * 3)}, meta);
  CliRun r = generate({"--from-png", dir + "/a1111.png", "-m", model, "-o", dir + "/x.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(generate({"-m", model, "-p", "a red fox", "-n", "ugly", "-s", "2", "-g", "1.5", "--seed", "42", "-W", "48",
                      "-H", "64", "-o", dir + "/y.png"})
                .code,
            0);
  EXPECT_EQ(read_png(dir + "/x.png").pixels, read_png(dir + "/y.png").pixels);
  json j = zimage_json(dir + "/x.png");
  EXPECT_EQ(j["prompt"], "a red fox");
  EXPECT_EQ(j["negative_prompt"], "ugly");
  EXPECT_EQ(j["seed"], 42);
  EXPECT_EQ(j["width"], 48);
}

TEST_F(CliRegenerate, MalformedA1111ParametersNameFileAndKey) {
  PngMetadata meta;
  meta.text = {{"parameters", "a red fox\nSteps: 2.5, Sampler: Euler, Seed: 42, Size: 48x64"}};
  write_png(dir + "/a1111.png", Image{16, 16, 3, std::vector<uint8_t>(16 * 16 * 3)}, meta);
  CliRun r = generate({"--from-png", dir + "/a1111.png", "-m", model, "-o", dir + "/x.png"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[from-png] " + dir + "/a1111.png: A1111 parameters: infotext Steps '2.5' is not an integer"),
            std::string::npos)
      << r.err;
  meta.text = {{"parameters", "a red fox\nSteps: 2, Sampler: Euler, Seed: 42, Size: big"}};
  write_png(dir + "/a1111.png", Image{16, 16, 3, std::vector<uint8_t>(16 * 16 * 3)}, meta);
  r = generate({"--from-png", dir + "/a1111.png", "-m", model, "-o", dir + "/x.png"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("infotext Size 'big' is not <width>x<height>"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/x.png"));
  meta.text = {{"Comment", "hello"}};
  write_png(dir + "/plain.png", Image{16, 16, 3, std::vector<uint8_t>(16 * 16 * 3)}, meta);
  r = generate({"--from-png", dir + "/plain.png", "-m", model, "-o", dir + "/x.png"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("has no generation parameters"), std::string::npos) << r.err;
}

// --seed -1 means a random seed, recorded in the metadata (so the image regenerates).
TEST_F(CliRegenerate, SeedMinusOneIsRandomAndRecorded) {
  ASSERT_EQ(
      generate({"-m", model, "-p", "a cat", "-W", "32", "-H", "32", "-s", "1", "--seed", "-1", "-o", dir + "/r.png"})
          .code,
      0);
  ASSERT_EQ(
      generate({"-m", model, "-p", "a cat", "-W", "32", "-H", "32", "-s", "1", "--seed", "-1", "-o", dir + "/s.png"})
          .code,
      0);
  const uint64_t a = zimage_json(dir + "/r.png")["seed"], b = zimage_json(dir + "/s.png")["seed"];
  EXPECT_NE(a, b);  // two 63-bit random seeds
  EXPECT_NE(a, 18446744073709551615ull);
  ASSERT_EQ(generate({"--from-png", dir + "/r.png", "-o", dir + "/t.png"}).code, 0);
  EXPECT_EQ(read_png(dir + "/t.png").pixels, read_png(dir + "/r.png").pixels);
}

// The infotext's Model: named the snapshot hash for hub ids.
TEST_F(CliRegenerate, ModelNameIsTheHubIdOrTheFolderName) {
  const std::string commit(40, 'a');
  const std::string repo = dir + "/hub/models--Tiny-Org--tiny-fp32";
  fs::create_directories(repo + "/refs");
  fs::create_directories(repo + "/snapshots");
  test::write_file(repo + "/refs/main", commit);
  fs::create_directory_symlink(fs::absolute(model), repo + "/snapshots/" + commit);
  CliRun r = generate({"-m", "Tiny-Org/tiny-fp32", "-p", "a cat", "-W", "32", "-H", "32", "-s", "1", "--seed", "1",
                       "-o", dir + "/h.png"},
                      "HF_HUB_CACHE=" + test::shell_quote(dir + "/hub"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(infotext(dir + "/h.png").find(", Model: Tiny-Org/tiny-fp32,"), std::string::npos)
      << infotext(dir + "/h.png");
  ASSERT_EQ(generate({"-m", model + "/", "-p", "a cat", "-W", "32", "-H", "32", "-s", "1", "--seed", "1", "-o",
                      dir + "/f.png"})
                .code,
            0);
  EXPECT_NE(infotext(dir + "/f.png").find(", Model: tiny-fp32,"), std::string::npos) << infotext(dir + "/f.png");
}

// A negative prompt with guidance 0 was dropped without a word.
TEST_F(CliRegenerate, NegativePromptWithoutGuidanceWarns) {
  CliRun r =
      generate({"-m", model, "-p", "a cat", "-n", "blurry", "-W", "32", "-H", "32", "-s", "1", "-o", dir + "/w.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("zimage: warning: the negative prompt is ignored: guidance is 0"), std::string::npos) << r.err;
  r = generate(
      {"-m", model, "-p", "a cat", "-n", "blurry", "-g", "2", "-W", "32", "-H", "32", "-s", "1", "-o", dir + "/v.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
}
