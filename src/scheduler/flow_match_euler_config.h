// FlowMatchEulerDiscreteScheduler's scheduler_config.json (diffusers
// schedulers/scheduling_flow_match_euler_discrete.py __init__ arguments and defaults).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "core/config.h"

namespace zimage::scheduler {

enum class TimeShiftType { Exponential, Linear };

struct FlowMatchEulerConfig {
  int64_t num_train_timesteps = 1000;
  double shift = 1.0;
  bool use_dynamic_shifting = false;
  std::optional<double> base_shift = 0.5;  // null in the json -> nullopt
  std::optional<double> max_shift = 1.15;
  int64_t base_image_seq_len = 256;
  int64_t max_image_seq_len = 4096;
  bool invert_sigmas = false;
  std::optional<double> shift_terminal;  // null / absent: no stretching
  TimeShiftType time_shift_type = TimeShiftType::Exponential;
  // use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas and stochastic_sampling are
  // accepted only when false (not supported yet): from_json rejects them naming the key.

  // Reads the keys (absent or null keys keep the defaults above) and validates the values.
  // Every problem is an Error starting with "[scheduler]" and naming the key and the value.
  static FlowMatchEulerConfig from_json(const JsonConfig& json);
  static FlowMatchEulerConfig load(const std::string& path);
  // Checks value ranges (shift > 0, num_train_timesteps >= 1, ...).
  void validate() const;
};

}  // namespace zimage::scheduler
