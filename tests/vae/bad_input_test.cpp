// Bad configs, inputs and weights give zimage::Error messages that start with "[vae]" and name the values.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "util/test_util.h"
#include "vae/autoencoder_kl.h"

using namespace zimage;

namespace {

const std::string kModel = test::fixture("models/tiny-fp32/vae");

// Copies the tiny-fp32 VAE to a temp folder, with `edit` applied to its config.
std::string copy_model(const std::string& tag, const std::function<void(nlohmann::json&)>& edit) {
  std::string dir = test::temp_dir(tag);
  auto j = nlohmann::json::parse(test::read_file(kModel + "/config.json"));
  edit(j);
  test::write_file(dir + "/config.json", j.dump(2));
  std::filesystem::copy_file(kModel + "/diffusion_pytorch_model.safetensors",
                             dir + "/diffusion_pytorch_model.safetensors");
  return dir;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void expect_has(const std::string& msg, const std::string& part) {
  EXPECT_NE(msg.find(part), std::string::npos) << "message: " << msg << "\nexpected to contain: " << part;
}

}  // namespace

TEST(VaeBadInput, ChannelsNotDivisibleByGroups) {
  // The second block gets 2 channels less than the fixture's: not a multiple of its norm_num_groups.
  int64_t groups = 0, bad = 0;
  std::string dir = copy_model("vae_groups", [&](nlohmann::json& j) {
    groups = j["norm_num_groups"];
    bad = j["block_out_channels"][1].get<int64_t>() - 2;
    j["block_out_channels"][1] = bad;
  });
  ASSERT_GT(groups, 2);
  ASSERT_NE(bad % groups, 0);
  std::string msg = error_of([&] { AutoencoderKL::load(dir); });
  expect_has(msg, "[vae]");
  expect_has(msg, "block_out_channels");
  expect_has(msg, std::to_string(bad) + " is not divisible by norm_num_groups = " + std::to_string(groups));
  std::filesystem::remove_all(dir);
}

TEST(VaeBadInput, UnsupportedConfigValues) {
  auto check = [](const std::string& tag, const std::function<void(nlohmann::json&)>& edit, const std::string& part) {
    std::string dir = copy_model(tag, edit);
    std::string msg = error_of([&] { AutoencoderKL::load(dir); });
    expect_has(msg, "[vae]");
    expect_has(msg, part);
    std::filesystem::remove_all(dir);
  };
  check(
      "vae_act", [](nlohmann::json& j) { j["act_fn"] = "gelu"; }, "act_fn");
  check(
      "vae_up", [](nlohmann::json& j) { j["up_block_types"][1] = "AttnUpDecoderBlock2D"; },
      "\"AttnUpDecoderBlock2D\" is not supported");
  check(
      "vae_len", [](nlohmann::json& j) { j["down_block_types"] = {"DownEncoderBlock2D"}; }, "down_block_types");
  check(
      "vae_type", [](nlohmann::json& j) { j["latent_channels"] = "sixteen"; }, "latent_channels");
}

TEST(VaeBadInput, LatentsWithWrongChannelCount) {
  auto vae = AutoencoderKL::load(kModel);
  Tensor z = Tensor::zeros(DType::F32, {1, 15, 4, 4});
  std::string msg = error_of([&] { vae.decode(z); });
  expect_has(msg, "[vae]");
  expect_has(msg, "15 channels");
  expect_has(msg, "latent_channels = 16");
  expect_has(error_of([&] { vae.decode(Tensor::zeros(DType::F32, {16, 4, 4})); }), "[16, 4, 4]");
  expect_has(error_of([&] { vae.encode(Tensor::zeros(DType::F32, {1, 4, 8, 8})); }), "[1, 4, 8, 8]");
  VaeDecodeOptions opt;
  opt.tiling = VaeDecodeOptions::Tiling::On;
  opt.tile_mode = VaeDecodeOptions::TileMode::Diffusers;
  opt.tile_latent_size = 1;  // step int(1 * 0.75) = 0
  expect_has(error_of([&] { vae.decode(Tensor::zeros(DType::F32, {1, 16, 4, 4}), opt); }), "step of 0");
  opt.tile_mode = VaeDecodeOptions::TileMode::Seamless;
  std::string small = error_of([&] { vae.decode(Tensor::zeros(DType::F32, {1, 16, 12, 12}), opt); });
  expect_has(small, "tile size 1 latents");
  expect_has(small, "minimum of 8");
}

TEST(VaeBadInput, WeightWithWrongShape) {
  std::string dir = copy_model("vae_shape", [](nlohmann::json&) {});
  const std::string file = dir + "/diffusion_pytorch_model.safetensors";
  std::map<std::string, Tensor> tensors;
  {
    SafeTensorsFile f(file);
    for (auto& [name, info] : f.tensors()) tensors[name] = f.get(name).clone();
  }
  const std::string name = "decoder.up_blocks.1.resnets.0.conv1.weight";
  const Shape good = tensors.at(name).shape();  // [C, C, 3, 3]
  ASSERT_EQ(good.size(), 4u);
  Shape bad = good;
  bad[3] = 1;
  tensors[name] = Tensor::zeros(DType::F32, bad);
  save_safetensors(file, tensors);
  std::string msg = error_of([&] { AutoencoderKL::load(dir); });
  expect_has(msg, "[vae]");
  expect_has(msg, name);
  expect_has(msg, shape_str(bad));
  expect_has(msg, shape_str(good));
  // A missing tensor is named too.
  tensors.erase("decoder.conv_out.bias");
  tensors[name] = Tensor::zeros(DType::F32, good);
  save_safetensors(file, tensors);
  expect_has(error_of([&] { AutoencoderKL::load(dir); }), "decoder.conv_out.bias");
  std::filesystem::remove_all(dir);
}

// Every config value that feeds arithmetic is checked when the config is read: an empty
// block_out_channels made the pipeline compute height % 0 (SIGFPE), 40 entries a scale of 2^39.
TEST(VaeBadInput, BlockOutChannelsLengthIsBounded) {
  for (size_t n : {size_t(0), size_t(9), size_t(40)}) {
    std::string dir = copy_model("vae_boc", [&](nlohmann::json& j) {
      j["block_out_channels"] = std::vector<int>(n, 8);
      j["down_block_types"] = std::vector<std::string>(n, "DownEncoderBlock2D");
      j["up_block_types"] = std::vector<std::string>(n, "UpDecoderBlock2D");
    });
    std::string msg = error_of([&] { AutoencoderKLConfig::load(dir + "/config.json"); });
    expect_has(msg, "[vae]");
    expect_has(msg, dir + "/config.json");
    expect_has(msg, "'block_out_channels' must list 1 to 8 channel counts");
    std::filesystem::remove_all(dir);
  }
  std::string dir = copy_model("vae_ss", [&](nlohmann::json& j) { j["sample_size"] = 1 << 30; });
  expect_has(error_of([&] { AutoencoderKLConfig::load(dir + "/config.json"); }),
             "'sample_size' = 1073741824 is out of range");
  std::filesystem::remove_all(dir);
  dir = copy_model("vae_cls", [&](nlohmann::json& j) { j["_class_name"] = "AutoencoderTiny"; });
  expect_has(error_of([&] { AutoencoderKLConfig::load(dir + "/config.json"); }),
             "'_class_name' = \"AutoencoderTiny\" is not supported (only \"AutoencoderKL\")");
  std::filesystem::remove_all(dir);
}

// Every tensor of the fixture checkpoints is one load() reads, and the other way round (the list is
// what `zimage info` checks from the headers).
TEST(VaeBadInput, ExpectedTensorsAreTheCheckpointsTensors) {
  for (const char* model : {"models/tiny-fp32/vae", "models/tiny-bf16/vae"}) {
    const auto cfg = AutoencoderKLConfig::load(test::fixture(std::string(model) + "/config.json"));
    SafeTensorsFile f(test::fixture(std::string(model) + "/diffusion_pytorch_model.safetensors"));
    std::map<std::string, Shape> expected, actual;
    for (auto& s : AutoencoderKL::expected_tensors(cfg)) expected[s.name] = s.shape;
    for (auto& [name, ti] : f.tensors()) actual[name] = ti.shape;
    EXPECT_EQ(expected, actual) << model;
  }
}
