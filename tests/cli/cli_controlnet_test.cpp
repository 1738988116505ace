// `zimage generate --controlnet/--control-image/--control-scale`: ControlNet and ControlNet
// inpainting through the CLI give diffusers' pixels (tests/fixtures/ref/tiny-fp32/controlnet_*),
// the PNG records the control image (file name and sha256), the ControlNet and the scale,
// --from-png regenerates from them or names the missing file, and bad input is refused before
// any model is loaded.
#include <gtest/gtest.h>
#include <sys/wait.h>

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

class CliControlNet : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("clicn");
  std::string model = test::fixture("models/tiny-fp32");
  std::string nets = test::fixture("controlnet/tiny-fp32/");
  void TearDown() override { fs::remove_all(dir); }

  struct Run {
    int code;
    std::string err;
  };
  Run generate(const std::vector<std::string>& args) {
    std::string cmd = std::string(ZIMAGE_CLI_PATH) + " generate -q --dtype float32";
    for (auto& a : args) {  // appends, not "lit" + std::string&& (GCC 12 -Wrestrict false positive, bug 105329)
      cmd += ' ';
      cmd += test::shell_quote(a);
    }
    cmd += " >/dev/null 2>" + test::shell_quote(dir + "/err.txt");
    int st = std::system(cmd.c_str());
    return {WIFEXITED(st) ? WEXITSTATUS(st) : 128, test::read_file(dir + "/err.txt")};
  }
  int max_diff(const std::string& png, const std::string& name) {
    SafeTensorsFile ref(test::fixture("ref/tiny-fp32/controlnet_" + name + "_image.safetensors"));
    auto r = ref.get("image_u8").to_vector();
    Image img = read_png(png);
    if (img.pixels.size() != r.size()) return 999;
    int m = 0;
    for (size_t i = 0; i < r.size(); ++i) m = std::max(m, int(std::fabs(float(img.pixels[i]) - r[i])));
    return m;
  }
  std::string copy_input(const std::string& from) {
    const std::string to = dir + "/" + fs::path(from).filename().string();
    fs::copy_file(test::fixture(from), to);
    return to;
  }
  void expect_error(const std::vector<std::string>& args, const std::string& what) {
    Run r = generate(args);
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

TEST_F(CliControlNet, ControlNetParityAndFromPng) {
  const std::string ctrl = copy_input("controlnet/ctrl_32.png");
  // The output size defaults to the control image's (32x32).
  Run r = generate({"-m", model, "-p", "a photo of a cat", "--controlnet", nets + "cn_plain", "--control-image", ctrl,
                    "--control-scale", "0.75", "-s", "3", "--seed", "1", "-o", dir + "/out.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LE(max_diff(dir + "/out.png", "plain_s075"), 1);
  json j = json::parse(read_png_metadata(dir + "/out.png").at("zimage"));
  EXPECT_EQ(j["control_image"]["file"], ctrl);
  EXPECT_EQ(j["control_image"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(j["controlnet"], nets + "cn_plain");
  EXPECT_EQ(j["controlnet_conditioning_scale"], 0.75);
  EXPECT_EQ(j["width"], 32);
  EXPECT_FALSE(j.contains("strength"));
  // The ControlNet as one .safetensors file (config inferred from its tensors): the same pixels.
  const std::string file = nets + "cn_plain/diffusion_pytorch_model.safetensors";
  r = generate({"-m", model, "-p", "a photo of a cat", "--controlnet", file, "--control-image", ctrl, "--control-scale",
                "0.75", "-s", "3", "--seed", "1", "-o", dir + "/file.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_png(dir + "/file.png").pixels, read_png(dir + "/out.png").pixels);
  EXPECT_EQ(json::parse(read_png_metadata(dir + "/file.png").at("zimage"))["controlnet"], file);

  ASSERT_EQ(generate({"--from-png", dir + "/out.png", "-o", dir + "/again.png"}).code, 0);
  EXPECT_EQ(read_png(dir + "/again.png").pixels, read_png(dir + "/out.png").pixels);
  // Another scale on the command line wins over the PNG's (and changes the image).
  ASSERT_EQ(generate({"--from-png", dir + "/out.png", "--control-scale", "1.5", "-o", dir + "/scaled.png"}).code, 0);
  EXPECT_NE(read_png(dir + "/scaled.png").pixels, read_png(dir + "/out.png").pixels);

  fs::remove(ctrl);
  expect_error(
      {"--from-png", dir + "/out.png", "-o", dir + "/out3.png"},
      "the control image '" + ctrl + "' (sha256 " + j["control_image"]["sha256"].get<std::string>() + ") is missing");
}

TEST_F(CliControlNet, ControlNetInpaintParityAndFromPng) {
  const std::string ctrl = copy_input("controlnet/ctrl_32.png"), init = copy_input("edit/rgb_48.png"),
                    mask = copy_input("edit/mask_holes_48.png");
  // The output size defaults to the init image's (48x48); the 32x32 control image is resized to it.
  Run r = generate({"-m",
                    model,
                    "-p",
                    "a photo of a cat",
                    "--controlnet",
                    nets + "cn_refiner",
                    "--control-image",
                    ctrl,
                    "--init-image",
                    init,
                    "--mask",
                    mask,
                    "--control-scale",
                    "0.8",
                    "-s",
                    "3",
                    "--seed",
                    "7",
                    "-o",
                    dir + "/out.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LE(max_diff(dir + "/out.png", "inpaint_holes"), 1);
  json j = json::parse(read_png_metadata(dir + "/out.png").at("zimage"));
  EXPECT_EQ(j["mask_image"]["file"], mask);
  EXPECT_EQ(j["control_image"]["file"], ctrl);
  EXPECT_FALSE(j.contains("strength"));
  ASSERT_EQ(generate({"--from-png", dir + "/out.png", "-o", dir + "/again.png"}).code, 0);
  EXPECT_EQ(read_png(dir + "/again.png").pixels, read_png(dir + "/out.png").pixels);
}

// Refused before the model is loaded: the model path does not exist, the error is about the input.
TEST_F(CliControlNet, BadInputIsRefusedBeforeLoading) {
  const std::string nomodel = dir + "/no-such-model", ctrl = test::fixture("controlnet/ctrl_32.png");
  const std::string net = nets + "cn_plain", out = dir + "/out.png";
  expect_error({"-m", nomodel, "-p", "x", "--controlnet", net, "--control-image", dir + "/missing.png", "-o", out},
               "missing.png");
  expect_error({"-m", nomodel, "-p", "x", "--controlnet", net, "--control-image",
                test::fixture("edit/modes.safetensors"), "-o", out},
               "is neither a PNG nor a JPEG file");
  expect_error(
      {"-m", nomodel, "-p", "x", "--controlnet", net, "--control-image", ctrl, "--control-scale", "1e9", "-o", out},
      "[pipeline] controlnet_conditioning_scale must be a finite number in [-1000, 1000], got 1e+09");
  expect_error({"-m", nomodel, "-p", "x", "--control-image", ctrl, "-o", out},
               "[generate] --control-image needs --controlnet MODEL");
  expect_error({"-m", nomodel, "-p", "x", "--controlnet", net, "-o", out},
               "[generate] --controlnet needs --control-image FILE");
  expect_error({"-m", nomodel, "-p", "x", "--control-scale", "0.5", "-o", out},
               "[generate] --control-scale needs --control-image");
  expect_error(
      {"-m", nomodel, "-p", "x", "--controlnet", dir + "/no-net", "--control-image", ctrl, "-o", out},
      "[controlnet] '" + dir + "/no-net' does not exist (a ZImageControlNetModel folder or a .safetensors file)");
  expect_error(
      {"-m", nomodel, "-p", "x", "--controlnet", net, "--control-image", ctrl, "--init-image", ctrl, "-o", out},
      "[pipeline] control_image with an init image but no mask_image");
  expect_error({"-m", nomodel, "-p", "x", "--controlnet", net, "--control-image", ctrl, "--init-image", ctrl, "--mask",
                ctrl, "--strength", "0.5", "-o", out},
               "[pipeline] strength is not a parameter of the ControlNet pipelines");
}

// A ControlNet that does not fit the model fails at load, before any weight is read; so do a
// file that is no ControlNet and inpainting with a ControlNet that cannot inpaint.
TEST_F(CliControlNet, MismatchedControlNetIsRefused) {
  const std::string ctrl = test::fixture("controlnet/ctrl_32.png"), out = dir + "/out.png";
  expect_error({"-m", model, "-p", "x", "--controlnet", test::fixture("controlnet/tiny-bf16/cn_plain"),
                "--control-image", ctrl, "-o", out},
               "this ControlNet does not match the transformer: dim 64 != the transformer's dim 72");
  const std::string transformer = model + "/transformer/diffusion_pytorch_model.safetensors";
  expect_error(
      {"-m", model, "-p", "x", "--controlnet", transformer, "--control-image", ctrl, "-o", out},
      "[controlnet] " + transformer + ": not a Z-Image ControlNet: missing tensor 'control_all_x_embedder.2-1.weight'");
  expect_error(
      {"-m", model, "-p", "x", "--controlnet", nets + "cn_plain", "--control-image", ctrl, "--init-image",
       test::fixture("edit/rgb_48.png"), "--mask", test::fixture("edit/mask_holes_48.png"), "-s", "1", "-o", out},
      "[pipeline] ControlNet inpainting needs a ControlNet with control_in_dim 33");
}

// `zimage info --controlnet`: a file's config as inferred (the keys of the folder's config.json,
// the same values), a folder's as saved.
TEST_F(CliControlNet, InfoShowsTheControlNetConfig) {
  for (const char* net : {"cn_plain", "cn_layers", "cn_refiner"}) {
    const std::string file = nets + net + "/diffusion_pytorch_model.safetensors";
    const test::CommandResult r = test::run_command({ZIMAGE_CLI_PATH, "info", model, "--controlnet", file});
    ASSERT_EQ(r.code, 0) << r.err;
    const json c = json::parse(r.out)["components"]["controlnet"];
    EXPECT_EQ(c["file"], file);
    EXPECT_EQ(c["config_inferred"], true);
    json saved = json::parse(test::read_file(nets + net + "/config.json"));
    saved.erase("_diffusers_version");
    for (auto& [k, v] : saved.items()) EXPECT_EQ(c["config"][k], v) << net << " " << k;
    EXPECT_GT(c["parameters"].get<int64_t>(), 0);
  }
  const test::CommandResult r = test::run_command({ZIMAGE_CLI_PATH, "info", model, "--controlnet", nets + "cn_plain"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json c = json::parse(r.out)["components"]["controlnet"];
  EXPECT_EQ(c["folder"], nets + "cn_plain");
  EXPECT_EQ(c["config"]["control_layers_places"], json({0, 2}));
}
