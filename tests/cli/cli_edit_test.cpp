// `zimage generate --init-image/--strength/--mask`: img2img and inpainting through the CLI give
// diffusers' pixels (tests/fixtures/ref/tiny-fp32/edit_*.safetensors), the PNG records each input
// (file name and sha256), --from-png regenerates from them or names the missing one, and bad
// input is refused before any model is loaded.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "util/test_util.h"
#include "zimage/image.h"

namespace fs = std::filesystem;
using namespace zimage;
using json = nlohmann::json;

namespace {

class CliEdit : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("cliedit");
  std::string model = test::fixture("models/tiny-fp32");
  void TearDown() override { fs::remove_all(dir); }

  test::CommandResult generate(const std::vector<std::string>& args) {
    std::vector<std::string> a{ZIMAGE_CLI_PATH, "generate", "-q", "--dtype", "float32"};
    a.insert(a.end(), args.begin(), args.end());
    return test::run_command(a);
  }
  // Largest |pixel - reference| of a PNG against an edit_<name> reference image.
  int max_diff(const std::string& png, const std::string& name) {
    SafeTensorsFile ref(test::fixture("ref/tiny-fp32/edit_" + name + "_image.safetensors"));
    auto r = ref.get("image_u8").to_vector();
    Image img = read_png(png);
    if (img.pixels.size() != r.size()) return 999;
    int m = 0;
    for (size_t i = 0; i < r.size(); ++i) m = std::max(m, int(std::fabs(float(img.pixels[i]) - r[i])));
    return m;
  }
  std::string copy_input(const std::string& name) {
    fs::copy_file(test::fixture("edit/" + name), dir + "/" + name);
    return dir + "/" + name;
  }
  void expect_error(const std::vector<std::string>& args, const std::string& what) {
    test::CommandResult r = generate(args);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == "-o") {
        EXPECT_FALSE(fs::exists(args[i + 1])) << args[i + 1];
      }
    }
  }
};

}  // namespace

TEST_F(CliEdit, Img2ImgEditParityAndFromPng) {
  const std::string init = copy_input("rgb_48.png");
  test::CommandResult r = generate({"-m", model, "-p", "a photo of a cat", "--init-image", init, "--strength", "0.6",
                                    "-s", "5", "--seed", "42", "-o", dir + "/out.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LE(max_diff(dir + "/out.png", "i2i_s06"), 1);
  json j = json::parse(read_png_metadata(dir + "/out.png").at("zimage"));
  EXPECT_EQ(j["init_image"]["file"], init);
  EXPECT_EQ(j["init_image"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(j["strength"], 0.6);
  EXPECT_EQ(j["width"], 48);
  EXPECT_NE(read_png_metadata(dir + "/out.png").at("parameters").find("Denoising strength: 0.6"), std::string::npos);

  ASSERT_EQ(generate({"--from-png", dir + "/out.png", "-o", dir + "/again.png"}).code, 0);
  EXPECT_EQ(read_png(dir + "/again.png").pixels, read_png(dir + "/out.png").pixels);

  // The input moved next to the PNG is found there; gone, it is named; changed, its hash is refused.
  fs::create_directories(dir + "/elsewhere");
  fs::copy_file(dir + "/out.png", dir + "/elsewhere/out.png");
  fs::rename(init, dir + "/elsewhere/rgb_48.png");
  ASSERT_EQ(generate({"--from-png", dir + "/elsewhere/out.png", "-o", dir + "/third.png"}).code, 0);
  EXPECT_EQ(read_png(dir + "/third.png").pixels, read_png(dir + "/out.png").pixels);
  fs::remove(dir + "/elsewhere/rgb_48.png");
  expect_error(
      {"--from-png", dir + "/elsewhere/out.png", "-o", dir + "/out4.png"},
      "the init image '" + init + "' (sha256 " + j["init_image"]["sha256"].get<std::string>() + ") is missing");
  fs::copy_file(test::fixture("edit/rgba_48.png"), init);
  expect_error({"--from-png", dir + "/elsewhere/out.png", "-o", dir + "/out4.png"}, "the PNG records");
}

TEST_F(CliEdit, InpaintEditParityAndFromPng) {
  const std::string init = copy_input("rgb_48.png"), mask = copy_input("mask_holes_48.png");
  test::CommandResult r = generate({"-m", model, "-p", "a photo of a cat", "--init-image", init, "--mask", mask, "-s",
                                    "4", "--seed", "5", "-o", dir + "/out.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LE(max_diff(dir + "/out.png", "inp_holes"), 1);
  json j = json::parse(read_png_metadata(dir + "/out.png").at("zimage"));
  EXPECT_EQ(j["mask_image"]["file"], mask);
  EXPECT_EQ(j["strength"], 1.0);
  ASSERT_EQ(generate({"--from-png", dir + "/out.png", "-o", dir + "/again.png"}).code, 0);
  EXPECT_EQ(read_png(dir + "/again.png").pixels, read_png(dir + "/out.png").pixels);
  fs::remove(mask);
  expect_error({"--from-png", dir + "/out.png", "-o", dir + "/out3.png"}, "the mask image '" + mask + "'");
}

// Image 1 of an img2img batch drawn from one seed regenerates from its PNG alone (the CLI runs the
// batch again and keeps that image: the noise follows the image's latent sample in the stream).
TEST_F(CliEdit, BatchImageRegeneratesFromPng) {
  const std::string init = copy_input("rgb_48.png");
  test::CommandResult r = generate({"-m", model, "-p", "a photo of a cat", "--init-image", init, "--strength", "0.75",
                                    "-s", "4", "--seed", "8", "--num-images", "2", "-o", dir + "/out.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(read_png_metadata(dir + "/out-1.png").at("zimage"));
  EXPECT_EQ(j["noise_batch_size"], 2);
  EXPECT_EQ(j["noise_index"], 1);
  ASSERT_EQ(generate({"--from-png", dir + "/out-1.png", "-o", dir + "/again.png"}).code, 0);
  EXPECT_EQ(read_png(dir + "/again.png").pixels, read_png(dir + "/out-1.png").pixels);
  EXPECT_NE(read_png(dir + "/out.png").pixels, read_png(dir + "/out-1.png").pixels);
  EXPECT_EQ(json::parse(read_png_metadata(dir + "/again.png").at("zimage"))["noise_index"], 1);
}

// Refused before the model is loaded: the model path does not exist, the error is about the input.
TEST_F(CliEdit, BadInputIsRefusedBeforeLoading) {
  const std::string nomodel = dir + "/no-such-model", init = test::fixture("edit/rgb_48.png");
  const std::string out = dir + "/out.png";
  expect_error({"-m", nomodel, "-p", "x", "--init-image", dir + "/missing.png", "-o", out}, "missing.png");
  expect_error({"-m", nomodel, "-p", "x", "--init-image", test::fixture("edit/modes.safetensors"), "-o", out},
               "is neither a PNG nor a JPEG file");
  expect_error({"-m", nomodel, "-p", "x", "--init-image", init, "--strength", "1.5", "-o", out},
               "[pipeline] The value of strength should be in [0.0, 1.0] but is 1.5");
  expect_error({"-m", nomodel, "-p", "x", "--init-image", init, "--strength", "0", "-o", out},
               "[pipeline] After adjusting the num_inference_steps by strength parameter: 0, the number of pipeline "
               "steps is 0 which is < 1 and not appropriate for this pipeline.");
  expect_error(
      {"-m", nomodel, "-p", "x", "--init-image", init, "--mask", test::fixture("edit/rgb_32x64.jpg"), "-o", out},
      "[pipeline] mask image is 64x32 but the init image is 48x48; they must be the same size");
  expect_error({"-m", nomodel, "-p", "x", "--init-image", test::fixture("edit/mode_l.png"), "-o", out},
               "[pipeline] init image is 7x5: its sides must be at least 16 pixels");
  expect_error({"-m", nomodel, "-p", "x", "--init-image", init, "-W", "64", "-o", out},
               "[pipeline] the requested size 64x48 (width x height) differs from the init image's 48x48");
  expect_error({"-m", nomodel, "-p", "x", "--mask", init, "-o", out}, "[generate] --mask needs --init-image");
  expect_error({"-m", nomodel, "-p", "x", "--strength", "0.5", "-o", out}, "[generate] --strength needs --init-image");
}
