// `zimage generate` reproduces diffusers' images for every tiny-fp32 pipeline fixture.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "util/test_util.h"
#include "zimage/image.h"

namespace fs = std::filesystem;
using namespace zimage;
using json = nlohmann::json;

namespace {
std::string q(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}
std::vector<std::string> as_list(const json& v) {
  if (v.is_null()) return {};
  if (v.is_string()) return {v.get<std::string>()};
  return v.get<std::vector<std::string>>();
}
}  // namespace

class CliParity : public ::testing::TestWithParam<std::string> {};

TEST_P(CliParity, MatchesDiffusers) {
  std::ifstream f(test::fixture("ref/tiny-fp32/pipeline_cases.json"));
  json c;
  for (auto& e : json::parse(f))
    if (e["name"] == GetParam()) c = e;
  ASSERT_FALSE(c.is_null());
  std::string dir = test::temp_dir("cliparity");
  std::string cmd =
      std::string(ZIMAGE_CLI_PATH) + " generate -q --dtype float32 -m " + q(test::fixture("models/tiny-fp32"));
  for (auto& p : as_list(c["prompt"])) cmd += " -p " + q(p);
  for (auto& n : as_list(c["negative_prompt"])) cmd += " -n " + q(n);
  cmd += " -W " + std::to_string(c["width"].get<int>()) + " -H " + std::to_string(c["height"].get<int>());
  cmd += " -s " + std::to_string(c["num_inference_steps"].get<int>());
  cmd += " -g " + c["guidance_scale"].dump() + " --cfg-truncation " + c["cfg_truncation"].dump();
  if (c["cfg_normalization"].get<bool>()) cmd += " --cfg-normalization";
  cmd += " --num-images " + std::to_string(c["num_images_per_prompt"].get<int>());
  std::string seeds;
  if (c.contains("seeds")) {
    for (auto& s : c["seeds"]) {  // appends, not "lit" + std::string&& (GCC 12 -Wrestrict false positive, bug 105329)
      if (!seeds.empty()) seeds += ',';
      seeds += s.dump();
    }
  } else {
    seeds = c["seed"].dump();
  }
  cmd += " --seed " + seeds + " -o " + q(dir + "/img.png") + " --save-latents " + q(dir + "/lat.safetensors");
  const test::CommandResult run = test::run_command(cmd);
  ASSERT_EQ(run.code, 0) << cmd << "\n" << run.err;

  SafeTensorsFile ref(test::fixture("ref/tiny-fp32/" + c["file"].get<std::string>()));
  SafeTensorsFile lat(dir + "/lat.safetensors");
  double err = rel_l2(lat.get("latents"), ref.get("latents"));
  EXPECT_LE(err, 1e-4);
  auto ref_img = ref.get("image_u8");
  const int64_t n = ref_img.dim(0), per = ref_img.numel() / n;
  auto rv = ref_img.to_vector();
  size_t ok = 0, total = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::string path = dir + (i == 0 ? "/img.png" : "/img-" + std::to_string(i) + ".png");
    Image im = read_png(path);
    ASSERT_EQ(int64_t(im.pixels.size()), per) << path;
    for (int64_t k = 0; k < per; ++k, ++total)
      ok += std::fabs(float(im.pixels[size_t(k)]) - rv[size_t(i * per + k)]) <= 1.f;
    auto meta = read_png_metadata(path);
    ASSERT_TRUE(meta.count("zimage") && meta.count("parameters")) << path;
    auto j = json::parse(meta["zimage"]);
    EXPECT_EQ(j["seed"].get<uint64_t>(),
              c.contains("seeds") ? c["seeds"][size_t(i)].get<uint64_t>() : c["seed"].get<uint64_t>());
  }
  EXPECT_GE(double(ok) / double(total), 0.999);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Cases, CliParity,
                         ::testing::Values("basic", "cfg", "cfg_trunc", "cfg_norm", "multi", "plist", "nonsquare",
                                           "seedlist"));

TEST(CliNumbering, ExistingFilesAreNotOverwritten) {
  std::string dir = test::temp_dir("clinum");
  test::write_file(dir + "/x.png", "keep");
  std::string cmd = std::string(ZIMAGE_CLI_PATH) + " generate -q --dtype float32 -m " +
                    q(test::fixture("models/tiny-fp32")) + " -p cat -W 32 -H 32 -s 1 --seed 1 --num-images 2 -o " +
                    q(dir + "/x.png");
  const test::CommandResult r = test::run_command(cmd);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(test::read_file(dir + "/x.png"), "keep");
  EXPECT_TRUE(fs::exists(dir + "/x-1.png"));
  EXPECT_TRUE(fs::exists(dir + "/x-2.png"));
  fs::remove_all(dir);
}

TEST(CliFromPng, RegeneratesTheSameImageFromItsMetadata) {
  std::string dir = test::temp_dir("clipng");
  std::string base = std::string(ZIMAGE_CLI_PATH) + " generate -q --dtype float32";
  std::string first = base + " -m " + q(test::fixture("models/tiny-fp32")) + " -p " +
                      q("a red fox, 狐狸\nsecond line") + " -W 48 -H 32 -s 3 -g 1.5 -n blurry --seed 77 -o " +
                      q(dir + "/a.png");
  test::CommandResult r = test::run_command(first);
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_command(base + " --from-png " + q(dir + "/a.png") + " -o " + q(dir + "/b.png"));
  ASSERT_EQ(r.code, 0) << r.err;
  Image a = read_png(dir + "/a.png"), b = read_png(dir + "/b.png");
  EXPECT_EQ(a.width, 48);
  EXPECT_EQ(a.height, 32);
  EXPECT_EQ(a.pixels, b.pixels);
  auto mb = json::parse(read_png_metadata(dir + "/b.png")["zimage"]);
  EXPECT_EQ(mb["prompt"], "a red fox, 狐狸\nsecond line");
  EXPECT_EQ(mb["seed"], 77);
  // An option given on the command line overrides the PNG's value.
  r = test::run_command(base + " --from-png " + q(dir + "/a.png") + " --seed 78 -o " + q(dir + "/c.png"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(read_png(dir + "/c.png").pixels, a.pixels);
  EXPECT_EQ(json::parse(read_png_metadata(dir + "/c.png")["zimage"])["seed"], 78);
  fs::remove_all(dir);
}

TEST(CliInfo, DescribesComponents) {
  const test::CommandResult r = test::run_command({ZIMAGE_CLI_PATH, "info", test::fixture("models/tiny-bf16")});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["pipeline"], "ZImagePipeline");
  EXPECT_EQ(j["components"]["transformer"]["class"], "ZImageTransformer2DModel");
  EXPECT_EQ(j["components"]["transformer"]["dtype"], "bfloat16");
  EXPECT_GT(j["components"]["text_encoder"]["parameters"].get<int64_t>(), 151936 * 32);
  EXPECT_GT(j["total_weight_bytes"].get<int64_t>(), 0);
}
