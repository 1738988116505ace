#include "scheduler/flow_match_euler.h"

#include <cmath>

#include "core/error.h"
#include "scheduler/schedule_math.h"

// This file is compiled with -ffp-contract=off (CMakeLists.txt): every multiply and add below
// rounds separately, as numpy and torch element-wise operations do.

namespace zimage::scheduler {

FlowMatchEulerDiscreteScheduler::FlowMatchEulerDiscreteScheduler(FlowMatchEulerConfig config)
    : config_(std::move(config)) {
  config_.validate();
  // timesteps = linspace(1, T, T, float32)[::-1]; sigmas = timesteps / T (torch float32)
  const int64_t T = config_.num_train_timesteps;
  const float Tf = float(T);
  const float shift = float(config_.shift), shift_m1 = float(config_.shift - 1.0);
  auto train_sigma = [&](int64_t i) {  // i-th of the T training sigmas
    float s = float(T - i) / Tf;
    if (!config_.use_dynamic_shifting) s = (shift * s) / (1.0f + shift_m1 * s);
    return s;
  };
  sigma_max_ = double(train_sigma(0));
  sigma_min_ = double(train_sigma(T - 1));
}

void FlowMatchEulerDiscreteScheduler::set_timesteps(int64_t num_inference_steps, std::optional<double> mu) {
  if (num_inference_steps < 1)
    fail("[scheduler] set_timesteps: num_inference_steps must be >= 1, got ", num_inference_steps);
  if (config_.use_dynamic_shifting && !mu)
    fail("[scheduler] set_timesteps: mu must be given when use_dynamic_shifting is true");
  const double T = double(config_.num_train_timesteps);
  // 1. timesteps = np.linspace(sigma_max * T, sigma_min * T, N); sigmas = timesteps / T (float64)
  std::vector<double> s = numpy_linspace_f64(sigma_max_ * T, sigma_min_ * T, num_inference_steps);
  for (double& v : s) v = v / T;
  // 2. shifting, float64
  if (config_.use_dynamic_shifting) {
    const double m = *mu;
    for (double& t : s) {
      const double x = 1.0 / t - 1.0;  // (1 / t - 1) ** 1.0
      if (config_.time_shift_type == TimeShiftType::Exponential)
        t = std::exp(m) / (std::exp(m) + x);
      else
        t = m / (m + x);
    }
  } else {
    const double shift = config_.shift;
    for (double& t : s) t = shift * t / (1.0 + (shift - 1.0) * t);
  }
  // 3. shift_terminal stretching, float64
  if (config_.shift_terminal && *config_.shift_terminal != 0.0) {
    if (s.back() == 1.0) terminal_error();
    const double scale = (1.0 - s.back()) / (1.0 - *config_.shift_terminal);
    for (double& t : s) t = 1.0 - (1.0 - t) / scale;
  }
  std::vector<float> s32(s.size());
  for (size_t i = 0; i < s.size(); ++i) s32[i] = float(s[i]);
  finish(std::move(s32));
}

void FlowMatchEulerDiscreteScheduler::set_timesteps_sigmas(const std::vector<float>& sigmas_in,
                                                           std::optional<double> mu,
                                                           std::optional<int64_t> num_inference_steps) {
  if (config_.use_dynamic_shifting && !mu)
    fail("[scheduler] set_timesteps: mu must be given when use_dynamic_shifting is true");
  if (sigmas_in.empty()) fail("[scheduler] set_timesteps: the sigmas list is empty");
  if (num_inference_steps && *num_inference_steps != int64_t(sigmas_in.size()))
    fail("[scheduler] set_timesteps: ", sigmas_in.size(), " sigmas for num_inference_steps = ", *num_inference_steps,
         " (they must have the same length)");
  for (size_t i = 0; i < sigmas_in.size(); ++i)
    if (!std::isfinite(sigmas_in[i]))
      fail("[scheduler] set_timesteps: sigma ", i, " = ", sigmas_in[i], " is not finite");
  // sigmas = np.array(sigmas).astype(np.float32); all arithmetic below is on float32 arrays.
  std::vector<float> s = sigmas_in;
  if (config_.use_dynamic_shifting) {
    if (config_.time_shift_type == TimeShiftType::Exponential) {
      const float e = float(std::exp(*mu));  // math.exp(mu), rounded when it meets the array
      for (float& t : s) t = e / (e + (1.0f / t - 1.0f));
    } else {
      const float m = float(*mu);
      for (float& t : s) t = m / (m + (1.0f / t - 1.0f));
    }
  } else {
    const float shift = float(config_.shift), shift_m1 = float(config_.shift - 1.0);
    for (float& t : s) t = (shift * t) / (1.0f + shift_m1 * t);
  }
  if (config_.shift_terminal && *config_.shift_terminal != 0.0) {
    if (s.back() == 1.0f) terminal_error();
    // one_minus_z[-1] / (1 - shift_terminal): float32 scalar over a Python float -> float32
    const float scale = (1.0f - s.back()) / float(1.0 - *config_.shift_terminal);
    for (float& t : s) t = 1.0f - (1.0f - t) / scale;
  }
  finish(std::move(s));
}

void FlowMatchEulerDiscreteScheduler::terminal_error() const {
  // diffusers divides 0 by 0 here and returns NaN sigmas.
  fail("[scheduler] set_timesteps: shift_terminal = ", *config_.shift_terminal,
       " needs a last sigma below 1, but the schedule ends at 1 (e.g. num_inference_steps = 1)");
}

void FlowMatchEulerDiscreteScheduler::finish(std::vector<float> s) {
  for (size_t i = 0; i < s.size(); ++i)
    if (!std::isfinite(s[i])) fail("[scheduler] set_timesteps: shifted sigma ", i, " = ", s[i], " is not finite");
  // 5. timesteps = sigmas * T (torch float32); 6. append the terminal sigma.
  const float Tf = float(config_.num_train_timesteps);
  if (config_.invert_sigmas)
    for (float& v : s) v = 1.0f - v;
  timesteps_.resize(s.size());
  for (size_t i = 0; i < s.size(); ++i) timesteps_[i] = s[i] * Tf;
  s.push_back(config_.invert_sigmas ? 1.0f : 0.0f);
  sigmas_ = std::move(s);
}

void FlowMatchEulerDiscreteScheduler::step(const float* v, const float* x, float* out, size_t n,
                                           int64_t step_index) const {
  if (timesteps_.empty()) fail("[scheduler] step: set_timesteps has not been called");
  if (step_index < 0 || step_index >= num_inference_steps())
    fail("[scheduler] step: step index ", step_index, " is outside [0, ", num_inference_steps(), ")");
  const float dt = sigmas_[size_t(step_index) + 1] - sigmas_[size_t(step_index)];
  for (size_t i = 0; i < n; ++i) {
    const float dv = dt * v[i];
    out[i] = x[i] + dv;
  }
}

Tensor FlowMatchEulerDiscreteScheduler::step(const Tensor& model_output, const Tensor& sample,
                                             int64_t step_index) const {
  if (model_output.dtype() != DType::F32 || sample.dtype() != DType::F32)
    fail("[scheduler] step: model_output and sample must be float32, got ", dtype_name(model_output.dtype()), " and ",
         dtype_name(sample.dtype()));
  if (model_output.shape() != sample.shape())
    fail("[scheduler] step: model_output shape ", shape_str(model_output.shape()), " != sample shape ",
         shape_str(sample.shape()));
  Tensor out = Tensor::empty(DType::F32, sample.shape());
  step(model_output.f32(), sample.f32(), out.f32(), size_t(sample.numel()), step_index);
  return out;
}

float FlowMatchEulerDiscreteScheduler::transformer_timestep(float t) { return (1000.0f - t) / 1000.0f; }

std::vector<float> FlowMatchEulerDiscreteScheduler::default_zimage_sigmas(int64_t n) {
  if (n < 1) fail("[scheduler] num_inference_steps must be >= 1, got ", n);
  return torch_linspace_f32(1.0, 1.0 / double(n), n);
}

double FlowMatchEulerDiscreteScheduler::calculate_shift(int64_t image_seq_len, int64_t base_seq_len,
                                                        int64_t max_seq_len, double base_shift, double max_shift) {
  if (max_seq_len == base_seq_len)
    fail("[scheduler] calculate_shift: max_image_seq_len = base_image_seq_len = ", base_seq_len, " (division by zero)");
  const double m = (max_shift - base_shift) / double(max_seq_len - base_seq_len);
  const double b = base_shift - m * double(base_seq_len);
  return double(image_seq_len) * m + b;
}

double FlowMatchEulerDiscreteScheduler::mu_for_image_seq_len(int64_t image_seq_len) const {
  if (!config_.base_shift) fail("[scheduler] calculate_shift: base_shift is null in the scheduler config");
  if (!config_.max_shift) fail("[scheduler] calculate_shift: max_shift is null in the scheduler config");
  return calculate_shift(image_seq_len, config_.base_image_seq_len, config_.max_image_seq_len, *config_.base_shift,
                         *config_.max_shift);
}

}  // namespace zimage::scheduler
