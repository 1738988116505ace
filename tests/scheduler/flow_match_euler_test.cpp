#include "scheduler/flow_match_euler.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "scheduler/schedule_math.h"
#include "util/test_util.h"

namespace zimage::scheduler {
namespace {

using Sched = FlowMatchEulerDiscreteScheduler;

FlowMatchEulerConfig config_from(const nlohmann::json& j) {
  return FlowMatchEulerConfig::from_json(JsonConfig::from_json(j, "scheduler_config.json"));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- tests/fixtures/ref/scheduler.json (diffusers 0.42.1 + torch 2.15) ----

nlohmann::json load_fixture() {
  const std::string path = test::fixture("ref/scheduler.json");
  if (!std::ifstream(path).good()) return nullptr;
  return nlohmann::json::parse(test::read_file(path));
}

TEST(FlowMatchEulerFixture, EveryCaseMatchesTimestepsAndSigmas) {
  const auto fx = load_fixture();
  ASSERT_FALSE(fx.is_null()) << "missing fixture tests/fixtures/ref/scheduler.json";
  size_t cases = 0, values = 0, exact = 0;
  double worst_t = 0, worst_s = 0;
  for (const auto& c : fx.at("cases")) {
    const std::string name = c.at("name");
    const auto cfg = config_from(fx.at("configs").at(c.at("config_name").get<std::string>()));
    Sched s(cfg);
    const int64_t n = c.at("num_inference_steps");
    const double mu = c.at("mu");
    // The pipeline's mu for this resolution.
    EXPECT_DOUBLE_EQ(s.mu_for_image_seq_len(c.at("image_seq_len").get<int64_t>()), mu) << name;
    const std::string mode = c.at("mode");
    if (mode == "custom_sigmas") {
      const auto sigmas_in = c.at("sigmas_in").get<std::vector<double>>();
      const auto mine = Sched::default_zimage_sigmas(n);
      ASSERT_EQ(mine.size(), sigmas_in.size()) << name;
      for (size_t i = 0; i < mine.size(); ++i)
        EXPECT_EQ(mine[i], float(sigmas_in[i])) << name << " default sigma " << i << " (torch.linspace bits)";
      std::vector<float> in32(sigmas_in.begin(), sigmas_in.end());
      s.set_timesteps_sigmas(in32, mu, n);
    } else {
      ASSERT_EQ(mode, "num_inference_steps") << name;
      s.set_timesteps(n, mu);
    }
    const auto want_t = c.at("timesteps").get<std::vector<double>>();
    const auto want_s = c.at("sigmas").get<std::vector<double>>();
    ASSERT_EQ(s.timesteps().size(), want_t.size()) << name;
    ASSERT_EQ(s.sigmas().size(), want_s.size()) << name;
    for (size_t i = 0; i < want_t.size(); ++i) {
      // Timesteps are ~1000: 1e-6 relative; sigmas in [0, 1]: 1e-6 absolute.
      const double dt = std::abs(double(s.timesteps()[i]) - want_t[i]) / 1000.0;
      EXPECT_LE(dt, 1e-6) << name << " timestep " << i << ": " << s.timesteps()[i] << " vs " << want_t[i];
      worst_t = std::max(worst_t, dt);
      exact += float(want_t[i]) == s.timesteps()[i];
    }
    for (size_t i = 0; i < want_s.size(); ++i) {
      const double ds = std::abs(double(s.sigmas()[i]) - want_s[i]);
      EXPECT_LE(ds, 1e-6) << name << " sigma " << i << ": " << s.sigmas()[i] << " vs " << want_s[i];
      worst_s = std::max(worst_s, ds);
      exact += float(want_s[i]) == s.sigmas()[i];
    }
    values += want_t.size() + want_s.size();
    ++cases;
  }
  EXPECT_GT(cases, 0u);
  std::printf("[ scheduler ] %zu cases, %zu values, %zu bit-identical; worst |dt|/1000 %.3g, worst |dsigma| %.3g\n",
              cases, values, exact, worst_t, worst_s);
  EXPECT_EQ(exact, values) << "every float32 value should be bit-identical to diffusers";
}

TEST(FlowMatchEulerFixture, StepMatchesDiffusers) {
  const auto fx = load_fixture();
  ASSERT_FALSE(fx.is_null()) << "missing fixture tests/fixtures/ref/scheduler.json";
  const auto& st = fx.at("step");
  Sched s(config_from(fx.at("configs").at(st.at("config_name").get<std::string>())));
  const int64_t n = st.at("num_inference_steps");
  s.set_timesteps_sigmas(Sched::default_zimage_sigmas(n), s.mu_for_image_seq_len(st.at("image_seq_len").get<int64_t>()),
                         n);
  size_t checked = 0;
  for (const auto& e : st.at("steps")) {
    const int64_t i = e.at("index");
    EXPECT_EQ(s.timesteps()[size_t(i)], float(e.at("timestep").get<double>())) << "step " << i;
    EXPECT_EQ(s.sigmas()[size_t(i)], float(e.at("sigma").get<double>())) << "step " << i;
    EXPECT_EQ(s.sigmas()[size_t(i) + 1], float(e.at("sigma_next").get<double>())) << "step " << i;
    const auto sample = e.at("sample").get<std::vector<float>>();
    const auto v = e.at("model_output").get<std::vector<float>>();
    const auto want = e.at("prev_sample").get<std::vector<float>>();
    const Shape shape = e.at("shape").get<Shape>();
    Tensor out = s.step(Tensor::from_f32(shape, v), Tensor::from_f32(shape, sample), i);
    ASSERT_EQ(out.shape(), shape);
    for (size_t k = 0; k < want.size(); ++k)
      EXPECT_EQ(std::bit_cast<uint32_t>(out.f32()[k]), std::bit_cast<uint32_t>(want[k]))
          << "step " << i << " element " << k << ": " << out.f32()[k] << " vs " << want[k];
    ++checked;
  }
  EXPECT_EQ(checked, size_t(n));
}

// ---- fixture-independent ----

TEST(FlowMatchEuler, ZImageTurboShift3EightSteps) {
  // shift 3, sigmas in = linspace(1, 1/8, 8): sigma' = 3s / (1 + 2s); s = 0.5 -> 0.75.
  Sched s(config_from({{"num_train_timesteps", 1000}, {"shift", 3.0}, {"use_dynamic_shifting", false}}));
  s.set_timesteps_sigmas(Sched::default_zimage_sigmas(8), s.mu_for_image_seq_len(1024), 8);
  ASSERT_EQ(s.timesteps().size(), 8u);
  ASSERT_EQ(s.sigmas().size(), 9u);
  EXPECT_EQ(s.sigmas()[0], 1.0f);
  EXPECT_EQ(s.timesteps()[0], 1000.0f);
  EXPECT_EQ(s.sigmas()[8], 0.0f);
  for (size_t i = 0; i < 8; ++i) {
    const double in = 1.0 - double(i) * (1.0 - 1.0 / 8) / 7.0;
    EXPECT_NEAR(s.sigmas()[i], 3 * in / (1 + 2 * in), 1e-6) << i;
    EXPECT_EQ(s.timesteps()[i], s.sigmas()[i] * 1000.0f) << i;
    if (i) {
      EXPECT_LT(s.sigmas()[i], s.sigmas()[i - 1]);
    }
  }
  EXPECT_FLOAT_EQ(Sched::transformer_timestep(s.timesteps()[0]), 0.0f);
  EXPECT_FLOAT_EQ(Sched::transformer_timestep(250.0f), 0.75f);
}

// torch rounds dt * v and then x + (dt * v); volatile keeps this test's own compiler from fusing.
float mul_then_add(float dt, float v, float x) {
  volatile float p = dt * v;
  return x + p;
}

TEST(FlowMatchEuler, StepIsEulerWithSeparateRoundings) {
  Sched s(config_from({{"shift", 3.0}}));
  s.set_timesteps_sigmas(Sched::default_zimage_sigmas(9), std::nullopt);
  const int64_t n = 4096;
  std::vector<float> x(n), v(n), out(n);
  for (int64_t i = 0; i < n; ++i) {
    x[size_t(i)] = std::sin(0.37f * float(i)) * 3.0f;
    v[size_t(i)] = std::cos(0.11f * float(i) + 0.5f) * 2.0f;
  }
  size_t fused_would_differ = 0;
  for (int64_t k = 0; k < s.num_inference_steps(); ++k) {
    const float dt = s.sigmas()[size_t(k) + 1] - s.sigmas()[size_t(k)];
    EXPECT_LT(dt, 0.0f);
    s.step(v.data(), x.data(), out.data(), size_t(n), k);
    for (int64_t i = 0; i < n; ++i) {
      const float want = mul_then_add(dt, v[size_t(i)], x[size_t(i)]);
      ASSERT_EQ(std::bit_cast<uint32_t>(out[size_t(i)]), std::bit_cast<uint32_t>(want)) << "step " << k << " i " << i;
      fused_would_differ += std::fma(dt, v[size_t(i)], x[size_t(i)]) != want;
    }
  }
  // The data set does distinguish the two roundings from a single fused one.
  EXPECT_GT(fused_would_differ, 0u);
  // The last step lands on sigma 0 and the step works in place.
  const float last_dt = 0.0f - s.sigmas()[8];
  const float x0 = x[0];
  s.step(v.data(), x.data(), x.data(), size_t(n), 8);
  EXPECT_EQ(x[0], mul_then_add(last_dt, v[0], x0));
}

TEST(FlowMatchEuler, StepErrors) {
  Sched s(config_from({}));
  std::vector<float> x(4), v(4);
  EXPECT_NE(error_of([&] { s.step(v.data(), x.data(), x.data(), 4, 0); }).find("[scheduler]"), std::string::npos);
  s.set_timesteps(3);
  EXPECT_THROW(s.step(v.data(), x.data(), x.data(), 4, 3), Error);
  EXPECT_THROW(s.step(v.data(), x.data(), x.data(), 4, -1), Error);
  EXPECT_THROW(s.step(Tensor::zeros(DType::F32, {2, 2}), Tensor::zeros(DType::F32, {4}), 0), Error);
  EXPECT_THROW(s.step(Tensor::zeros(DType::BF16, {4}), Tensor::zeros(DType::F32, {4}), 0), Error);
}

TEST(FlowMatchEuler, DefaultSigmasAreTorchLinspace) {
  EXPECT_EQ(Sched::default_zimage_sigmas(1), std::vector<float>{1.0f});
  EXPECT_EQ(Sched::default_zimage_sigmas(2), (std::vector<float>{1.0f, 0.5f}));
  const auto s9 = Sched::default_zimage_sigmas(9);
  ASSERT_EQ(s9.size(), 9u);
  EXPECT_EQ(s9.front(), 1.0f);
  EXPECT_EQ(s9.back(), float(1.0 / 9));  // the end point is exact
  // torch.linspace(1.0, 1/9, 9)[1] as printed by torch 2.15: 0.8888888955116272
  EXPECT_EQ(s9[1], 0.8888888955116272f);
  EXPECT_THROW(Sched::default_zimage_sigmas(0), Error);
  EXPECT_THROW(Sched::default_zimage_sigmas(-3), Error);
}

TEST(ScheduleMath, LinspaceEndPointsAndSymmetry) {
  const auto a = torch_linspace_f32(-2.0, 3.0, 11);
  EXPECT_EQ(a.front(), -2.0f);
  EXPECT_EQ(a.back(), 3.0f);
  EXPECT_EQ(a[5], 0.5f);
  EXPECT_TRUE(torch_linspace_f32(0, 1, 0).empty());
  const auto d = numpy_linspace_f64(1000.0, 1.0, 4);
  EXPECT_EQ(d, (std::vector<double>{1000.0, 667.0, 334.0, 1.0}));
  EXPECT_EQ(numpy_linspace_f64(5.0, 7.0, 1), std::vector<double>{5.0});
  EXPECT_THROW(numpy_linspace_f64(0, 1, -1), Error);
}

TEST(FlowMatchEuler, CalculateShift) {
  EXPECT_DOUBLE_EQ(Sched::calculate_shift(256), 0.5);
  EXPECT_DOUBLE_EQ(Sched::calculate_shift(4096), 1.15);
  EXPECT_NEAR(Sched::calculate_shift(1024), 0.63, 1e-12);
  EXPECT_THROW(Sched::calculate_shift(10, 256, 256), Error);
  Sched s(config_from({{"base_shift", nullptr}}));
  EXPECT_NE(error_of([&] { s.mu_for_image_seq_len(1024); }).find("base_shift"), std::string::npos);
}

TEST(FlowMatchEuler, DynamicShiftingNeedsMu) {
  Sched s(config_from({{"use_dynamic_shifting", true}}));
  EXPECT_NE(error_of([&] { s.set_timesteps(4); }).find("mu"), std::string::npos);
  EXPECT_NE(error_of([&] { s.set_timesteps_sigmas({1.0f, 0.5f}); }).find("mu"), std::string::npos);
  s.set_timesteps_sigmas({1.0f, 0.5f}, 0.0);  // exp(0) = 1: sigma' = 1 / (1 + 1/s - 1) = s
  EXPECT_EQ(s.sigmas()[1], 0.5f);
}

TEST(FlowMatchEuler, InvertSigmasAndShiftTerminal) {
  Sched inv(config_from({{"invert_sigmas", true}}));
  inv.set_timesteps_sigmas({1.0f, 0.75f, 0.5f});
  EXPECT_EQ(inv.sigmas(), (std::vector<float>{0.0f, 0.25f, 0.5f, 1.0f}));
  EXPECT_EQ(inv.timesteps(), (std::vector<float>{0.0f, 250.0f, 500.0f}));
  Sched term(config_from({{"shift_terminal", 0.1}}));
  term.set_timesteps_sigmas({1.0f, 0.75f, 0.5f});
  EXPECT_NEAR(term.sigmas()[2], 0.1f, 1e-7);  // the last sigma stretched to shift_terminal
  EXPECT_EQ(term.sigmas()[0], 1.0f);
  term.set_timesteps(5);
  EXPECT_NEAR(term.sigmas()[4], 0.1f, 1e-7);
  // One step ends at sigma 1: diffusers would produce NaN (0 / 0); here it is an Error.
  EXPECT_NE(error_of([&] { term.set_timesteps(1); }).find("shift_terminal"), std::string::npos);
  EXPECT_NE(error_of([&] { term.set_timesteps_sigmas({1.0f}); }).find("shift_terminal"), std::string::npos);
  // Sigmas that shift to infinity are refused.
  Sched neg(config_from({{"shift", 3.0}}));
  EXPECT_NE(error_of([&] { neg.set_timesteps_sigmas({1.0f, -0.5f}); }).find("not finite"), std::string::npos);
}

TEST(FlowMatchEuler, BadStepCountsAndSigmaLists) {
  Sched s(config_from({}));
  EXPECT_THROW(s.set_timesteps(0), Error);
  EXPECT_THROW(s.set_timesteps(-1), Error);
  EXPECT_NE(error_of([&] { s.set_timesteps_sigmas({}); }).find("empty"), std::string::npos);
  EXPECT_THROW(s.set_timesteps_sigmas({1.0f, 0.5f}, std::nullopt, 3), Error);
  EXPECT_THROW(s.set_timesteps_sigmas({1.0f, NAN}), Error);
}

TEST(FlowMatchEulerConfig, ParsesDefaultsAndValues) {
  const auto d = config_from(nlohmann::json::object());
  EXPECT_EQ(d.num_train_timesteps, 1000);
  EXPECT_EQ(d.shift, 1.0);
  EXPECT_FALSE(d.use_dynamic_shifting);
  EXPECT_EQ(d.base_shift, 0.5);
  EXPECT_EQ(d.max_image_seq_len, 4096);
  EXPECT_FALSE(d.shift_terminal.has_value());
  EXPECT_EQ(d.time_shift_type, TimeShiftType::Exponential);
  const auto c = config_from({{"_class_name", "FlowMatchEulerDiscreteScheduler"},
                              {"num_train_timesteps", 500},
                              {"shift", 3.0},
                              {"time_shift_type", "linear"},
                              {"shift_terminal", nullptr},
                              {"max_shift", nullptr}});
  EXPECT_EQ(c.num_train_timesteps, 500);
  EXPECT_EQ(c.shift, 3.0);
  EXPECT_EQ(c.time_shift_type, TimeShiftType::Linear);
  EXPECT_FALSE(c.max_shift.has_value());
}

TEST(FlowMatchEulerConfig, LoadsFromFile) {
  const std::string dir = test::temp_dir("sched_cfg");
  const std::string path = dir + "/scheduler_config.json";
  test::write_file(path, R"({"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000,
                             "shift": 3.0, "use_dynamic_shifting": false})");
  const auto c = FlowMatchEulerConfig::load(path);
  EXPECT_EQ(c.shift, 3.0);
  std::remove(path.c_str());
  EXPECT_NE(error_of([&] { FlowMatchEulerConfig::load(path); }).rfind("[scheduler]", 0), std::string::npos);
}

TEST(FlowMatchEulerConfig, BadValuesNameKeyAndValue) {
  struct Case {
    nlohmann::json j;
    std::string key, value;
  };
  const std::vector<Case> cases = {
      {{{"shift", 0.0}}, "shift", "0"},
      {{{"shift", -2.5}}, "shift", "-2.5"},
      {{{"num_train_timesteps", 0}}, "num_train_timesteps", "0"},
      {{{"num_train_timesteps", "many"}}, "num_train_timesteps", "many"},
      {{{"use_karras_sigmas", true}}, "use_karras_sigmas", "true"},
      {{{"use_exponential_sigmas", true}}, "use_exponential_sigmas", "true"},
      {{{"use_beta_sigmas", true}}, "use_beta_sigmas", "true"},
      {{{"stochastic_sampling", true}}, "stochastic_sampling", "true"},
      {{{"time_shift_type", "cosine"}}, "time_shift_type", "cosine"},
      {{{"shift_terminal", 1.0}}, "shift_terminal", "1"},
      {{{"_class_name", "EulerDiscreteScheduler"}}, "_class_name", "EulerDiscreteScheduler"},
      {{{"use_dynamic_shifting", "yes"}}, "use_dynamic_shifting", "yes"},
  };
  for (const auto& c : cases) {
    const std::string msg = error_of([&] { config_from(c.j); });
    EXPECT_EQ(msg.rfind("[scheduler]", 0), 0u) << c.j.dump() << " -> " << msg;
    EXPECT_NE(msg.find(c.key), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.value), std::string::npos) << msg;
  }
  // False flags are fine.
  EXPECT_NO_THROW(config_from({{"use_karras_sigmas", false}, {"stochastic_sampling", false}}));
}

}  // namespace
}  // namespace zimage::scheduler
