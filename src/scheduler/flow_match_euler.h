// diffusers FlowMatchEulerDiscreteScheduler as ZImagePipeline drives it:
//   mu = calculate_shift(image_seq_len, ...);  sigmas = default_zimage_sigmas(N)
//   set_timesteps_sigmas(sigmas, mu)            (scheduler.set_timesteps(N, sigmas=..., mu=mu))
//   for i: transformer timestep = transformer_timestep(timesteps()[i]); x = step(v, x, i)
// The arithmetic follows the Python line by line in the same precision: numpy float64 where the
// reference computes on float64 arrays, float32 where it computes on float32 arrays or torch
// tensors (numpy 2 promotion: a Python float meeting a float32 array is rounded to float32).
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "core/tensor.h"
#include "scheduler/flow_match_euler_config.h"

namespace zimage::scheduler {

class FlowMatchEulerDiscreteScheduler {
 public:
  explicit FlowMatchEulerDiscreteScheduler(FlowMatchEulerConfig config);

  const FlowMatchEulerConfig& config() const { return config_; }
  // The training schedule's end points computed in __init__ (float32 values).
  double sigma_max() const { return sigma_max_; }
  double sigma_min() const { return sigma_min_; }

  // set_timesteps(num_inference_steps, mu=mu): numpy linspace between the training sigmas.
  void set_timesteps(int64_t num_inference_steps, std::optional<double> mu = std::nullopt);
  // set_timesteps(sigmas=sigmas, mu=mu); with num_inference_steps given it must equal
  // sigmas.size(), as in the reference.
  void set_timesteps_sigmas(const std::vector<float>& sigmas, std::optional<double> mu = std::nullopt,
                            std::optional<int64_t> num_inference_steps = std::nullopt);

  int64_t num_inference_steps() const { return int64_t(timesteps_.size()); }
  // One timestep per inference step (float32, in [0, num_train_timesteps]).
  const std::vector<float>& timesteps() const { return timesteps_; }
  // num_inference_steps + 1 values: the schedule and the terminal 0 (1 with invert_sigmas).
  const std::vector<float>& sigmas() const { return sigmas_; }

  // Euler step i: out = x + (sigma[i+1] - sigma[i]) * v in float32, one rounding per operation
  // (torch: dt * model_output, then sample + that). out may alias x.
  void step(const float* v, const float* x, float* out, size_t n, int64_t step_index) const;
  // Tensor form: float32 tensors of the same shape; returns the new sample.
  Tensor step(const Tensor& model_output, const Tensor& sample, int64_t step_index) const;

  // The timestep ZImagePipeline gives the transformer: (1000 - t) / 1000 in float32.
  static float transformer_timestep(float t);
  // get_default_z_image_sigmas(N) = torch.linspace(1.0, 1 / N, N) (float32).
  static std::vector<float> default_zimage_sigmas(int64_t num_inference_steps);
  // diffusers.pipelines.flux.pipeline_flux.calculate_shift (float64).
  static double calculate_shift(int64_t image_seq_len, int64_t base_seq_len = 256, int64_t max_seq_len = 4096,
                                double base_shift = 0.5, double max_shift = 1.15);
  // calculate_shift with this scheduler's config values, as ZImagePipeline passes them.
  double mu_for_image_seq_len(int64_t image_seq_len) const;

 private:
  void finish(std::vector<float> sigmas32);  // steps 5 and 6 of set_timesteps
  [[noreturn]] void terminal_error() const;
  FlowMatchEulerConfig config_;
  double sigma_max_ = 1.0, sigma_min_ = 0.0;
  std::vector<float> timesteps_, sigmas_;
};

}  // namespace zimage::scheduler
