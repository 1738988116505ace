// Bad input to the text encoder: every problem is a zimage::Error that starts with
// "[text_encoder]" and names the bad key / tensor / value.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "text_encoder/qwen3_text_encoder.h"
#include "util/test_util.h"

namespace zimage {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// "(no error)" when f throws nothing: expect_contains fails on it (no "[text_encoder]" prefix).
using test::error_of;

void expect_contains(const std::string& msg, std::initializer_list<std::string> parts) {
  if (std::getenv("ZIMAGE_TE_VERBOSE")) std::printf("  %s\n", msg.c_str());
  EXPECT_EQ(msg.rfind("[text_encoder]", 0), 0u) << msg;
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

const std::string kFixture = "models/tiny-fp32/text_encoder";

json fixture_config() { return json::parse(test::read_file(test::fixture(kFixture + "/config.json"))); }

// A copy of the fixture folder with an edited config.json and the weights symlinked.
std::string with_config(const json& cfg) {
  const std::string dir = test::temp_dir("te_cfg");
  test::write_file(dir + "/config.json", cfg.dump(2));
  fs::create_symlink(test::fixture(kFixture + "/model.safetensors"), dir + "/model.safetensors");
  return dir;
}

std::string load_error(const json& cfg) {
  const std::string dir = with_config(cfg);
  std::string msg = error_of([&] { Qwen3TextEncoder::load(dir, DType::F32); });
  fs::remove_all(dir);
  return msg;
}

TEST(TextEncoderErrors, HeadsNotDivisibleByKvHeads) {
  json c = fixture_config();
  c["num_attention_heads"] = 3;
  c["num_key_value_heads"] = 2;
  expect_contains(load_error(c), {"config.json", "num_attention_heads", "3", "num_key_value_heads = 2"});
}

TEST(TextEncoderErrors, MissingKey) {
  json c = fixture_config();
  c.erase("hidden_size");
  expect_contains(load_error(c), {"config.json", "'hidden_size'", "missing"});
}

TEST(TextEncoderErrors, WrongTypedKey) {
  json c = fixture_config();
  c["num_hidden_layers"] = "three";
  expect_contains(load_error(c), {"'num_hidden_layers'", "integer", "\"three\""});
  c = fixture_config();
  c["rms_norm_eps"] = "small";
  expect_contains(load_error(c), {"'rms_norm_eps'", "\"small\""});
}

TEST(TextEncoderErrors, OutOfRangeValues) {
  json c = fixture_config();
  c["hidden_size"] = 0;
  expect_contains(load_error(c), {"'hidden_size'", "= 0"});
  c = fixture_config();
  c["head_dim"] = 7;
  expect_contains(load_error(c), {"'head_dim'", "7", "even"});
  c = fixture_config();
  c["rms_norm_eps"] = -1;
  expect_contains(load_error(c), {"'rms_norm_eps'"});
}

TEST(TextEncoderErrors, UnsupportedVariants) {
  json c = fixture_config();
  c["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
  expect_contains(load_error(c), {"rope_parameters.rope_type", "\"yarn\"", "default"});
  c = fixture_config();
  c.erase("rope_parameters");
  c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  expect_contains(load_error(c), {"rope_scaling", "\"linear\""});
  c = fixture_config();
  c["hidden_act"] = "gelu";
  expect_contains(load_error(c), {"'hidden_act'", "\"gelu\""});
  c = fixture_config();
  c["layer_types"][0] = "sliding_attention";
  expect_contains(load_error(c), {"'layer_types'", "[0]", "sliding_attention"});
}

// Config parsing on its own: old-style top-level rope_theta, defaults as transformers has them.
TEST(TextEncoderConfig, RopeThetaLocations) {
  json c = fixture_config();
  c.erase("rope_parameters");
  c["rope_theta"] = 5000.0;
  EXPECT_EQ(Qwen3Config::parse(JsonConfig::from_json(c, "x/config.json")).rope_theta, 5000.0);
  c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 250.0}};
  EXPECT_EQ(Qwen3Config::parse(JsonConfig::from_json(c, "x/config.json")).rope_theta, 250.0);
  c.erase("rope_theta");
  c.erase("rope_parameters");
  EXPECT_EQ(Qwen3Config::parse(JsonConfig::from_json(c, "x/config.json")).rope_theta, 10000.0);
  c.erase("head_dim");
  c["num_key_value_heads"] = nullptr;
  auto q = Qwen3Config::parse(JsonConfig::from_json(c, "x/config.json"));
  EXPECT_EQ(q.head_dim, 128);  // Qwen3Config's class default
  EXPECT_EQ(q.num_key_value_heads, q.num_attention_heads);
}

// A tiny hand-written safetensors file: 8-byte little-endian header length, JSON header, data.
struct TinyTensor {
  std::string name;
  Shape shape;
};
std::string safetensors_f32(const std::vector<TinyTensor>& ts) {
  json h = json::object();
  uint64_t off = 0;
  for (const auto& t : ts) {
    const uint64_t bytes = uint64_t(shape_numel(t.shape)) * 4;
    h[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {off, off + bytes}}};
    off += bytes;
  }
  std::string hs = h.dump();
  while (hs.size() % 8) hs += ' ';
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(hs.size()) >> (8 * i)) & 0xff);
  std::string data(off, '\0');
  for (size_t i = 0; i + 4 <= data.size(); i += 4) {  // 0.5f everywhere
    const uint32_t bits = f32_bits(0.5f);
    std::memcpy(&data[i], &bits, 4);
  }
  return out + hs + data;
}

json tiny_config() {
  return json{{"vocab_size", 10},
              {"hidden_size", 8},
              {"intermediate_size", 12},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 2},
              {"num_key_value_heads", 1},
              {"head_dim", 4},
              {"rms_norm_eps", 1e-6},
              {"hidden_act", "silu"},
              {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
}

std::vector<TinyTensor> tiny_weights() {
  std::vector<TinyTensor> w = {{"embed_tokens.weight", {10, 8}}, {"norm.weight", {8}}};
  for (int i = 0; i < 2; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    w.push_back({p + "input_layernorm.weight", {8}});
    w.push_back({p + "post_attention_layernorm.weight", {8}});
    w.push_back({p + "self_attn.q_proj.weight", {8, 8}});
    w.push_back({p + "self_attn.k_proj.weight", {4, 8}});
    w.push_back({p + "self_attn.v_proj.weight", {4, 8}});
    w.push_back({p + "self_attn.o_proj.weight", {8, 8}});
    w.push_back({p + "self_attn.q_norm.weight", {4}});
    w.push_back({p + "self_attn.k_norm.weight", {4}});
    w.push_back({p + "mlp.gate_proj.weight", {12, 8}});
    w.push_back({p + "mlp.up_proj.weight", {12, 8}});
    w.push_back({p + "mlp.down_proj.weight", {8, 12}});
  }
  return w;
}

std::string tiny_dir(const std::vector<TinyTensor>& w, const json& cfg = tiny_config()) {
  const std::string dir = test::temp_dir("te_tiny");
  test::write_file(dir + "/config.json", cfg.dump());
  test::write_file(dir + "/model.safetensors", safetensors_f32(w));
  return dir;
}

TEST(TextEncoderErrors, HandWrittenModelLoadsAndRuns) {
  const std::string dir = tiny_dir(tiny_weights());
  auto enc = Qwen3TextEncoder::load(dir, DType::F32);
  EXPECT_EQ(enc.layers_run(), 1);
  Tensor y = enc.encode({1, 2, 3, 0, 0}, 3);
  EXPECT_EQ(y.shape(), (Shape{3, 8}));
  for (float v : y.to_vector()) EXPECT_TRUE(std::isfinite(v));
  fs::remove_all(dir);
}

TEST(TextEncoderErrors, WrongWeightShape) {
  auto w = tiny_weights();
  for (auto& t : w)
    if (t.name == "layers.0.self_attn.k_proj.weight") t.shape = {8, 8};
  const std::string dir = tiny_dir(w);
  std::string msg = error_of([&] { Qwen3TextEncoder::load(dir, DType::F32); });
  expect_contains(msg, {"layers.0.self_attn.k_proj.weight", "[8, 8]", "[4, 8]"});
  fs::remove_all(dir);
}

TEST(TextEncoderErrors, MissingWeight) {
  auto w = tiny_weights();
  w.erase(
      std::remove_if(w.begin(), w.end(), [](const TinyTensor& t) { return t.name == "layers.0.mlp.down_proj.weight"; }),
      w.end());
  const std::string dir = tiny_dir(w);
  expect_contains(error_of([&] { Qwen3TextEncoder::load(dir, DType::F32); }), {"layers.0.mlp.down_proj.weight"});
  fs::remove_all(dir);
}

TEST(TextEncoderErrors, LastLayerIsNotNeeded) {
  // hidden_states[-2] never uses the last layer or the final norm: a checkpoint without them loads.
  auto w = tiny_weights();
  w.erase(
      std::remove_if(w.begin(), w.end(),
                     [](const TinyTensor& t) { return t.name.rfind("layers.1.", 0) == 0 || t.name == "norm.weight"; }),
      w.end());
  const std::string dir = tiny_dir(w);
  EXPECT_NO_THROW(Qwen3TextEncoder::load(dir, DType::BF16));
  fs::remove_all(dir);
}

TEST(TextEncoderErrors, NoEmbedding) {
  auto w = tiny_weights();
  w.erase(w.begin());
  const std::string dir = tiny_dir(w);
  expect_contains(error_of([&] { Qwen3TextEncoder::load(dir, DType::F32); }), {"embed_tokens.weight"});
  fs::remove_all(dir);
}

TEST(TextEncoderErrors, BadTokenIdsAndLengths) {
  const std::string dir = tiny_dir(tiny_weights());
  auto enc = Qwen3TextEncoder::load(dir, DType::F32);
  expect_contains(error_of([&] { enc.encode({1, 10, 2}, 3); }), {"token id 10", "position 1", "[0, 10)"});
  expect_contains(error_of([&] { enc.encode({-1}, 1); }), {"token id -1", "position 0"});
  expect_contains(error_of([&] { enc.encode({1, 2}, 3); }), {"num_real = 3"});
  expect_contains(error_of([&] { enc.encode_masked({1, 2, 3}, {1, 0, 1}); }), {"right-padded", "position 2"});
  expect_contains(error_of([&] { enc.encode_masked({1, 2, 3}, {1, 1}); }), {"attention mask has 2 entries"});
  expect_contains(error_of([&] { enc.encode_batch({{1, 2}}, {2, 1}); }), {"1 prompts but 2 lengths"});
  // Padding ids are never looked at, so an out-of-range id there is fine.
  EXPECT_NO_THROW(enc.encode({1, 2, 99}, 2));
  fs::remove_all(dir);
}

TEST(TextEncoderErrors, MissingFolderOrConfig) {
  expect_contains(error_of([&] { Qwen3TextEncoder::load("/nonexistent/text_encoder", DType::F32); }),
                  {"/nonexistent/text_encoder"});
  const std::string dir = test::temp_dir("te_nocfg");
  test::write_file(dir + "/model.safetensors", safetensors_f32(tiny_weights()));
  expect_contains(error_of([&] { Qwen3TextEncoder::load(dir, DType::F32); }), {"config.json"});
  fs::remove_all(dir);
}

TEST(TextEncoderErrors, UnsupportedComputeDtype) {
  const std::string dir = tiny_dir(tiny_weights());
  expect_contains(error_of([&] { Qwen3TextEncoder::load(dir, DType::F16); }), {"float16"});
  fs::remove_all(dir);
}

}  // namespace

// The tensors load() reads are the fixture checkpoint's, minus the last layer and the final norm
// (hidden_states[-2] never uses them); the list is what `zimage info` checks from the headers.
TEST(TextEncoderErrors, ExpectedTensorsAreWhatLoadReads) {
  for (const char* model : {"models/tiny-fp32/text_encoder", "models/tiny-bf16/text_encoder"}) {
    const Qwen3Config cfg = Qwen3Config::load(test::fixture(std::string(model) + "/config.json"));
    SafeTensorsFile f(test::fixture(std::string(model) + "/model.safetensors"));
    std::map<std::string, Shape> expected, actual;
    for (auto& s : Qwen3TextEncoder::expected_tensors(cfg, "")) expected[s.name] = s.shape;
    const std::string last = "layers." + std::to_string(cfg.num_hidden_layers - 1) + ".";
    for (auto& [name, ti] : f.tensors())
      if (name.rfind(last, 0) != 0 && name != "norm.weight") actual[name] = ti.shape;
    EXPECT_EQ(expected, actual) << model;
  }
}

TEST(TextEncoderErrors, ModelClassAndPositionsAreChecked) {
  json c = fixture_config();
  c["model_type"] = "llama";
  expect_contains(load_error(c), {"'model_type' = \"llama\" is not supported (only \"qwen3\")"});
  c = fixture_config();
  c["architectures"] = {"Qwen2ForCausalLM"};
  expect_contains(load_error(c), {"'architectures' entry \"Qwen2ForCausalLM\" is not supported"});
  c = fixture_config();
  c["max_position_embeddings"] = 0;
  expect_contains(load_error(c), {"'max_position_embeddings' = 0 is out of range"});
}

}  // namespace zimage
