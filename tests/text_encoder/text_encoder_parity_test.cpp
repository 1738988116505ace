// Qwen3TextEncoder against transformers' Qwen3Model hidden_states[-2] (tests/fixtures/ref/<model>/
// text_encoder.safetensors, written by tools/reference/make_fixtures.py).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "text_encoder/qwen3_text_encoder.h"
#include "util/test_util.h"

namespace zimage {
namespace {

using test::fixture;

struct Prompt {
  int index = 0;
  std::string name;
  std::vector<int32_t> ids, mask;
  int64_t num_real = 0;
  int64_t max_length = 0;
};

std::vector<Prompt> load_prompts() {
  auto j = nlohmann::json::parse(test::read_file(fixture("ref/tokenizer_prompts.json")));
  std::vector<Prompt> out;
  for (size_t i = 0; i < j.size(); ++i) {
    Prompt p;
    p.index = int(i);
    p.name = j[i]["name"].get<std::string>();
    p.ids = j[i]["input_ids"].get<std::vector<int32_t>>();
    p.mask = j[i]["attention_mask"].get<std::vector<int32_t>>();
    p.max_length = j[i]["max_length"].get<int64_t>();
    for (int32_t m : p.mask) p.num_real += m != 0;
    out.push_back(std::move(p));
  }
  return out;
}

// Prompts of the reference's batched run: ref/<model>/text_encoder_cases.json, or (older
// fixtures) the safetensors metadata.
std::vector<int> batch_indices(const std::string& model, const SafeTensorsFile& ref) {
  const std::string cases = fixture("ref/" + model + "/text_encoder_cases.json");
  if (std::filesystem::exists(cases))
    return nlohmann::json::parse(test::read_file(cases)).at("batch_prompt_indices").get<std::vector<int>>();
  return nlohmann::json::parse(ref.metadata().at("batch_prompt_indices")).get<std::vector<int>>();
}

std::string model_dir(const std::string& model) { return fixture("models/" + model + "/text_encoder"); }

// Compares every max_length-512 prompt with ref "prompt{i}{suffix}"; returns the worst error.
double check_prompts(const Qwen3TextEncoder& enc, const std::string& model, const std::string& suffix, double tol) {
  SafeTensorsFile ref(fixture("ref/" + model + "/text_encoder.safetensors"));
  double worst = 0;
  int checked = 0;
  for (const Prompt& p : load_prompts()) {
    if (p.max_length != 512) continue;
    const std::string key = "prompt" + std::to_string(p.index) + suffix;
    EXPECT_TRUE(ref.has(key)) << key;
    if (!ref.has(key)) continue;
    Tensor want = ref.get(key).to(DType::F32);
    Tensor got = enc.encode(p.ids, p.num_real);
    EXPECT_EQ(got.shape(), want.shape()) << key;
    if (got.shape() != want.shape()) continue;
    const double err = rel_l2(got, want);
    EXPECT_LE(err, tol) << model << " " << key << " (" << p.name << ", " << p.num_real << " tokens)";
    worst = std::max(worst, err);
    if (std::getenv("ZIMAGE_TE_VERBOSE")) std::printf("  %s %s: %.3g\n", model.c_str(), key.c_str(), err);
    ++checked;
  }
  EXPECT_EQ(checked, 14);
  std::printf("[text_encoder] %s %s vs prompt{i}%s: worst rel L2 %.3g over %d prompts\n", model.c_str(),
              dtype_name(enc.compute_dtype()), suffix.c_str(), worst, checked);
  return worst;
}

TEST(TextEncoderParity, TinyFp32InF32) {
  auto enc = Qwen3TextEncoder::load(model_dir("tiny-fp32"), DType::F32);
  EXPECT_EQ(enc.layers_run(), enc.config().num_hidden_layers - 1);
  check_prompts(enc, "tiny-fp32", "", 1e-5);
}

TEST(TextEncoderParity, TinyBf16InBf16) {
  auto enc = Qwen3TextEncoder::load(model_dir("tiny-bf16"), DType::BF16);
  check_prompts(enc, "tiny-bf16", "", 1e-2);
  // For the record: how far the bf16 emulation is from the fp32 run (not a parity target).
  SafeTensorsFile ref(fixture("ref/tiny-bf16/text_encoder.safetensors"));
  double worst = 0;
  for (const Prompt& p : load_prompts()) {
    const std::string key = "prompt" + std::to_string(p.index) + "_fp32";
    if (p.max_length != 512 || !ref.has(key)) continue;
    worst = std::max(worst, rel_l2(enc.encode(p.ids, p.num_real), ref.get(key).to(DType::F32)));
  }
  std::printf("[text_encoder] tiny-bf16 bfloat16 vs prompt{i}_fp32: worst rel L2 %.3g\n", worst);
}

TEST(TextEncoderParity, TinyBf16InF32) {
  auto enc = Qwen3TextEncoder::load(model_dir("tiny-bf16"), DType::F32);
  check_prompts(enc, "tiny-bf16", "_fp32", 1e-5);
}

// The reference's batched run (padded to 512, several prompts) gives the same rows as one
// prompt at a time, which is what encode computes.
TEST(TextEncoderParity, BatchedRunMatches) {
  for (auto [model, compute, tol] : {std::tuple{"tiny-fp32", DType::F32, 1e-5}, {"tiny-bf16", DType::BF16, 1e-2}}) {
    auto enc = Qwen3TextEncoder::load(model_dir(model), compute);
    SafeTensorsFile ref(fixture(std::string("ref/") + model + "/text_encoder.safetensors"));
    auto idx = batch_indices(model, ref);
    ASSERT_FALSE(idx.empty());
    auto prompts = load_prompts();
    std::vector<std::vector<int32_t>> ids;
    std::vector<int64_t> lens;
    for (int i : idx) ids.push_back(prompts[size_t(i)].ids), lens.push_back(prompts[size_t(i)].num_real);
    auto out = enc.encode_batch(ids, lens);
    ASSERT_EQ(out.size(), idx.size());
    for (size_t b = 0; b < idx.size(); ++b) {
      Tensor want = ref.get("batch_prompt" + std::to_string(idx[b])).to(DType::F32);
      ASSERT_EQ(out[b].shape(), want.shape());
      EXPECT_LE(rel_l2(out[b], want), tol) << model << " batch_prompt" << idx[b];
    }
  }
}

TEST(TextEncoderParity, MaskedEqualsCount) {
  auto enc = Qwen3TextEncoder::load(model_dir("tiny-fp32"), DType::F32);
  const Prompt p = load_prompts()[0];
  Tensor a = enc.encode(p.ids, p.num_real);
  Tensor b = enc.encode_masked(p.ids, p.mask);
  EXPECT_EQ(rel_l2(a, b), 0.0);
  // Padding content never matters: the same real tokens with other padding ids.
  std::vector<int32_t> other = p.ids;
  for (size_t i = size_t(p.num_real); i < other.size(); ++i) other[i] = 7;
  EXPECT_EQ(rel_l2(enc.encode(other, p.num_real), a), 0.0);
  EXPECT_EQ(enc.encode(p.ids, 0).dim(0), 0);
}

// Qwen3ForCausalLM checkpoints (the real Z-Image-Turbo text_encoder) name everything "model.*"
// and carry an lm_head that must be ignored.
TEST(TextEncoderParity, CausalLmPrefixedWeights) {
  const std::string src = model_dir("tiny-fp32");
  const std::string bytes = test::read_file(src + "/model.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  nlohmann::json renamed;
  uint64_t end = 0;
  for (auto& [k, v] : header.items()) {
    renamed[k == "__metadata__" ? k : "model." + k] = v;
    if (k != "__metadata__") end = std::max(end, v["data_offsets"][1].get<uint64_t>());
  }
  // lm_head: a [1, 1] tensor of the wrong shape for a real head, appended after the data.
  renamed["lm_head.weight"] = {{"dtype", "F32"}, {"shape", {1, 1}}, {"data_offsets", {end, end + 4}}};
  std::string h = renamed.dump();
  while (h.size() % 8) h += ' ';
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(h.size()) >> (8 * i)) & 0xff);
  out += h + bytes.substr(8 + n, end) + std::string(4, '\0');
  const std::string dir = test::temp_dir("te_prefixed");
  test::write_file(dir + "/model.safetensors", out);
  std::filesystem::create_symlink(src + "/config.json", dir + "/config.json");

  auto plain = Qwen3TextEncoder::load(src, DType::F32);
  auto prefixed = Qwen3TextEncoder::load(dir, DType::F32);
  const Prompt p = load_prompts()[1];
  EXPECT_EQ(rel_l2(prefixed.encode(p.ids, p.num_real), plain.encode(p.ids, p.num_real)), 0.0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace zimage
