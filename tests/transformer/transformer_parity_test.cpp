// Parity of ZImageTransformer2DModel with diffusers on the tiny fixture models
// (tools/reference/make_fixtures.py: ref/<model>/transformer.safetensors, transformer_cases.json).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "transformer/transformer_z_image.h"
#include "util/test_util.h"

namespace zimage {
namespace {

struct Case {
  std::string name;
  int64_t batch = 0;
};

std::vector<Case> load_cases(const std::string& model) {
  std::ifstream f(test::fixture("ref/" + model + "/transformer_cases.json"));
  EXPECT_TRUE(f.good()) << "missing transformer_cases.json for " << model;
  nlohmann::json j = nlohmann::json::parse(f);
  std::vector<Case> cases;
  for (auto& c : j) cases.push_back({c.at("name").get<std::string>(), c.at("batch").get<int64_t>()});
  return cases;
}

const ZImageTransformer2DModel& model(const std::string& name, DType compute) {
  static std::map<std::pair<std::string, int>, std::unique_ptr<ZImageTransformer2DModel>> cache;
  auto& m = cache[{name, int(compute)}];
  if (!m)
    m = std::make_unique<ZImageTransformer2DModel>(
        ZImageTransformer2DModel::load(test::fixture("models/" + name + "/transformer"), compute));
  return *m;
}

// Runs every case of `name` with `compute` and checks each output against `out{j}{suffix}`.
void run_cases(const std::string& name, DType compute, const std::string& suffix, double tol) {
  const auto& m = model(name, compute);
  SafeTensorsFile ref(test::fixture("ref/" + name + "/transformer.safetensors"));
  const auto cases = load_cases(name);
  EXPECT_EQ(cases.size(), 4u);
  for (const auto& c : cases) {
    std::vector<Tensor> xs, caps;
    for (int64_t j = 0; j < c.batch; ++j) {
      xs.push_back(ref.get(c.name + ".x" + std::to_string(j)).to(DType::F32));
      caps.push_back(ref.get(c.name + ".cap" + std::to_string(j)).to(DType::F32));
    }
    const std::vector<float> t = ref.get(c.name + ".t").to_vector();
    const auto outs = m.forward(xs, t, caps);
    ASSERT_EQ(int64_t(outs.size()), c.batch);
    for (int64_t j = 0; j < c.batch; ++j) {
      const Tensor want = ref.get(c.name + ".out" + std::to_string(j) + suffix);
      ASSERT_EQ(outs[size_t(j)].shape(), want.shape()) << c.name;
      const double err = rel_l2(outs[size_t(j)], want.to(DType::F32));
      std::printf("  %-10s %s compute=%s item %lld: rel L2 %.3g\n", name.c_str(), c.name.c_str(), dtype_name(compute),
                  (long long)j, err);
      EXPECT_LE(err, tol) << name << " " << c.name << " item " << j;
    }
  }
}

TEST(TransformerParity, TinyFp32ComputeF32) { run_cases("tiny-fp32", DType::F32, "", 1e-5); }

TEST(TransformerParity, TinyBf16ComputeBf16) { run_cases("tiny-bf16", DType::BF16, "", 1e-2); }

TEST(TransformerParity, TinyBf16ComputeF32VsFp32Upcast) { run_cases("tiny-bf16", DType::F32, "_fp32", 1e-5); }

// A batch gives every item the same result as running it alone (diffusers pads the batch and masks
// the padded keys; nothing leaks between items).
TEST(TransformerParity, BatchEqualsSingleRuns) {
  const auto& m = model("tiny-fp32", DType::F32);
  SafeTensorsFile ref(test::fixture("ref/tiny-fp32/transformer.safetensors"));
  std::vector<Tensor> xs{ref.get("batch2.x0").to(DType::F32), ref.get("batch2.x1").to(DType::F32)};
  std::vector<Tensor> caps{ref.get("batch2.cap0").to(DType::F32), ref.get("batch2.cap1").to(DType::F32)};
  const std::vector<float> t = ref.get("batch2.t").to_vector();
  const auto both = m.forward(xs, t, caps);
  for (size_t j = 0; j < 2; ++j) {
    const auto one = m.forward({xs[j]}, {t[j]}, {caps[j]});
    EXPECT_LE(rel_l2(both[j], one[0]), 1e-6) << "item " << j;
  }
}

}  // namespace
}  // namespace zimage
