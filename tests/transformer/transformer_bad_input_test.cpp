// Bad input to ZImageTransformer2DModel: every problem is a zimage::Error that starts with
// "[transformer]" and names the offending value.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "transformer/transformer_z_image.h"
#include "util/test_util.h"

namespace zimage {
namespace {

const std::string kModel = "models/tiny-bf16/transformer";

using Weights = std::map<std::string, Tensor>;

// A copy of the tiny model with an edited config and/or edited weights, in a fresh folder.
std::string edited_model(const std::function<void(nlohmann::json&)>& edit_cfg,
                         const std::function<void(Weights&)>& edit_weights = {}) {
  const std::string dir = test::temp_dir("transformer_bad");
  nlohmann::json cfg = nlohmann::json::parse(test::read_file(test::fixture(kModel + "/config.json")));
  if (edit_cfg) edit_cfg(cfg);
  test::write_file(dir + "/config.json", cfg.dump(2));
  SafeTensorsFile src(test::fixture(kModel + "/diffusion_pytorch_model.safetensors"));
  Weights w;
  for (const auto& [name, info] : src.tensors()) w[name] = src.get(name).clone();
  if (edit_weights) edit_weights(w);
  save_safetensors(dir + "/diffusion_pytorch_model.safetensors", w);
  return dir;
}

// Runs `fn` and checks that it throws a zimage::Error starting with "[transformer]" that
// contains every one of `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown; expected one containing '" << parts.front() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("[transformer]", 0), 0u) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

const ZImageTransformer2DModel& tiny() {
  static ZImageTransformer2DModel m = ZImageTransformer2DModel::load(test::fixture(kModel), DType::F32);
  return m;
}

Tensor filled(Shape s, float v = 0.1f) {
  Tensor t = Tensor::empty(DType::F32, std::move(s));
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = v * float(i % 7 - 3);
  return t;
}

TEST(TransformerBadInput, LatentNotMultipleOfPatch) {
  expect_error(
      [] {
        tiny().forward({filled({16, 1, 7, 8})}, {0.5f}, {filled({5, 32})});
      },
      {"latent 0", "[16, 1, 7, 8]", "not a multiple of the patch size"});
  expect_error([] { tiny().forward({filled({16, 1, 8, 9})}, {0.5f}, {filled({5, 32})}); }, {"[16, 1, 8, 9]"});
}

TEST(TransformerBadInput, WrongChannelCount) {
  expect_error(
      [] {
        tiny().forward({filled({8, 1, 8, 8})}, {0.5f}, {filled({5, 32})});
      },
      {"latent 0 has 8 channels", "in_channels = 16"});
}

TEST(TransformerBadInput, WrongRankOrCaptionWidth) {
  expect_error([] { tiny().forward({filled({16, 8, 8})}, {0.5f}, {filled({5, 32})}); }, {"[16, 8, 8]"});
  expect_error(
      [] {
        tiny().forward({filled({16, 1, 8, 8})}, {0.5f}, {filled({5, 31})});
      },
      {"caption features 0", "[5, 31]", "32"});
  expect_error(
      [] {
        tiny().forward({filled({16, 1, 8, 8})}, {0.5f}, {filled({0, 32})});
      },
      {"caption features 0", "empty"});
}

TEST(TransformerBadInput, MismatchedListLengths) {
  expect_error(
      [] {
        tiny().forward({filled({16, 1, 8, 8}), filled({16, 1, 8, 8})}, {0.5f, 0.5f}, {filled({5, 32})});
      },
      {"2 latents but 1 caption"});
  expect_error(
      [] {
        tiny().forward({filled({16, 1, 8, 8})}, {0.5f, 0.2f}, {filled({5, 32})});
      },
      {"1 latents but 2 timesteps"});
  expect_error([] { tiny().forward({}, {}, {}); }, {"no latents"});
}

TEST(TransformerBadInput, UnknownPatchSize) {
  expect_error([] { tiny().forward({filled({16, 1, 8, 8})}, {0.5f}, {filled({5, 32})}, 4, 1); }, {"patch size 4-1"});
}

TEST(TransformerBadInput, PositionBeyondAxesLens) {
  // Caption of 7 tokens is padded to 32 positions (1..32), the image frame sits at 33; axes_lens[0] = 20.
  const std::string dir = edited_model([](nlohmann::json& c) { c["axes_lens"] = {20, 512, 512}; });
  auto m = ZImageTransformer2DModel::load(dir, DType::F32);
  expect_error(
      [&] {
        m.forward({filled({16, 1, 8, 8})}, {0.5f}, {filled({7, 32})});
      },
      {"position id 33 on axis 0", "axes_lens[0] = 20"});
  std::filesystem::remove_all(dir);
}

TEST(TransformerBadInput, ConfigAxesDimsSum) {
  const std::string dir = edited_model([](nlohmann::json& c) { c["axes_dims"] = {8, 12, 8}; });
  expect_error([&] { ZImageTransformer2DModel::load(dir, DType::F32); },
               {"axes_dims [8, 12, 8] sum 28 != head_dim 32"});
  std::filesystem::remove_all(dir);
}

TEST(TransformerBadInput, ConfigOddAxisDim) {
  const std::string dir = edited_model([](nlohmann::json& c) { c["axes_dims"] = {9, 12, 11}; });
  expect_error([&] { ZImageTransformer2DModel::load(dir, DType::F32); }, {"axes_dims[0] = 9", "even"});
  std::filesystem::remove_all(dir);
}

TEST(TransformerBadInput, ConfigDimNotDivisibleByHeads) {
  const std::string dir = edited_model([](nlohmann::json& c) { c["n_heads"] = 3; });
  expect_error([&] { ZImageTransformer2DModel::load(dir, DType::F32); }, {"dim 64 is not divisible by n_heads 3"});
  std::filesystem::remove_all(dir);
}

TEST(TransformerBadInput, ConfigBadValues) {
  const std::string d1 = edited_model([](nlohmann::json& c) { c["all_f_patch_size"] = {1, 1}; });
  expect_error([&] { ZImageTransformer2DModel::load(d1, DType::F32); },
               {"all_patch_size [2]", "all_f_patch_size [1, 1]"});
  const std::string d2 = edited_model([](nlohmann::json& c) { c["dim"] = "sixty-four"; });
  expect_error([&] { ZImageTransformer2DModel::load(d2, DType::F32); }, {"dim", "sixty-four"});
  const std::string d3 = edited_model([](nlohmann::json& c) { c["_class_name"] = "FluxTransformer2DModel"; });
  expect_error([&] { ZImageTransformer2DModel::load(d3, DType::F32); }, {"FluxTransformer2DModel"});
  for (auto& d : {d1, d2, d3}) std::filesystem::remove_all(d);
}

TEST(TransformerBadInput, MissingPadToken) {
  for (const char* pad : {"x_pad_token", "cap_pad_token"}) {
    const std::string dir = edited_model({}, [&](Weights& w) { w.erase(pad); });
    expect_error([&] { ZImageTransformer2DModel::load(dir, DType::F32); }, {"missing pad token", pad});
    std::filesystem::remove_all(dir);
  }
}

TEST(TransformerBadInput, WeightOfWrongShape) {
  const std::string dir = edited_model({}, [](Weights& w) {
    w["layers.1.attention.to_q.weight"] = Tensor::zeros(DType::BF16, {64, 32});
  });
  expect_error([&] { ZImageTransformer2DModel::load(dir, DType::BF16); },
               {"layers.1.attention.to_q.weight", "[64, 32]", "expected [64, 64]"});
  std::filesystem::remove_all(dir);
}

TEST(TransformerBadInput, MissingWeight) {
  const std::string dir = edited_model({}, [](Weights& w) { w.erase("noise_refiner.0.feed_forward.w3.weight"); });
  expect_error([&] { ZImageTransformer2DModel::load(dir, DType::F32); }, {"noise_refiner.0.feed_forward.w3.weight"});
  std::filesystem::remove_all(dir);
}

TEST(TransformerBadInput, UnsupportedComputeDtypeAndMissingFolder) {
  expect_error([] { ZImageTransformer2DModel::load(test::fixture(kModel), DType::F16); }, {"float16"});
  expect_error([] { ZImageTransformer2DModel::load(test::temp_dir("nope") + "/models/nope/transformer", DType::F32); },
               {"models/nope/transformer"});
}

}  // namespace

// axes_lens only bounds the position ids: the RoPE tables are built per call for the positions
// used (16777216 per axis used to build 1.6 GB of tables at load on this tiny model).
TEST(TransformerBadInput, ConfigAxesLensOutOfRange) {
  const std::string dir = edited_model([](nlohmann::json& c) { c["axes_lens"] = {16777216, 16777216, 16777216}; });
  expect_error([&] { ZImageTransformer2DModel::load(dir, DType::F32); },
               {"axes_lens[0] = 16777216 is out of range [1, 1048576]"});
  std::filesystem::remove_all(dir);
}

TEST(TransformerBadInput, RopeSameValuesForAnyAxesLens) {
  transformer::RopeEmbedder small(256.0, {12, 4, 8}, {40, 8, 8});
  transformer::RopeEmbedder large(256.0, {12, 4, 8}, {1 << 20, 1 << 20, 1 << 20});
  const std::vector<transformer::PosId> ids = {{0, 0, 0}, {39, 7, 3}, {5, 2, 7}};
  EXPECT_EQ(small(ids).to_vector(), large(ids).to_vector());
}

// Every tensor the fixtures hold is one load() reads, and the other way round (the list is what
// `zimage info` checks without reading the weights).
TEST(TransformerBadInput, ExpectedTensorsAreTheCheckpointsTensors) {
  for (const char* model : {"models/tiny-bf16/transformer", "models/tiny-fp32/transformer"}) {
    const auto cfg = ZImageTransformerConfig::load(test::fixture(std::string(model) + "/config.json"));
    SafeTensorsFile f(test::fixture(std::string(model) + "/diffusion_pytorch_model.safetensors"));
    std::map<std::string, Shape> expected, actual;
    for (auto& s : ZImageTransformer2DModel::expected_tensors(cfg)) expected[s.name] = s.shape;
    for (auto& [name, ti] : f.tensors()) actual[name] = ti.shape;
    EXPECT_EQ(expected, actual) << model;
  }
}

}  // namespace zimage
