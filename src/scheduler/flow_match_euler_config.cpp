#include "scheduler/flow_match_euler_config.h"

#include <cmath>

#include "core/error.h"

namespace zimage::scheduler {

namespace {

std::optional<double> optional_float(const JsonConfig& j, const std::string& key, std::optional<double> def) {
  if (!j.json().contains(key)) return def;
  if (j.json()[key].is_null()) return std::nullopt;
  return j.get_float(key);
}

}  // namespace

FlowMatchEulerConfig FlowMatchEulerConfig::from_json(const JsonConfig& j) {
  FlowMatchEulerConfig c;
  try {
    if (j.has("_class_name")) {
      const std::string cls = j.get_string("_class_name");
      if (cls != "FlowMatchEulerDiscreteScheduler")
        j.bad("_class_name", "= \"" + cls + "\": only FlowMatchEulerDiscreteScheduler is supported");
    }
    c.num_train_timesteps = j.get_int("num_train_timesteps", c.num_train_timesteps);
    c.shift = j.get_float("shift", c.shift);
    c.use_dynamic_shifting = j.get_bool("use_dynamic_shifting", c.use_dynamic_shifting);
    c.base_shift = optional_float(j, "base_shift", c.base_shift);
    c.max_shift = optional_float(j, "max_shift", c.max_shift);
    c.base_image_seq_len = j.get_int("base_image_seq_len", c.base_image_seq_len);
    c.max_image_seq_len = j.get_int("max_image_seq_len", c.max_image_seq_len);
    c.invert_sigmas = j.get_bool("invert_sigmas", c.invert_sigmas);
    c.shift_terminal = optional_float(j, "shift_terminal", std::nullopt);
    for (const char* key : {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"})
      if (j.get_bool(key, false)) j.bad(key, "= true: this sigma schedule is not supported yet");
    if (j.get_bool("stochastic_sampling", false))
      j.bad("stochastic_sampling", "= true: stochastic sampling is not supported yet");
    const std::string tst = j.get_string("time_shift_type", "exponential");
    if (tst == "exponential")
      c.time_shift_type = TimeShiftType::Exponential;
    else if (tst == "linear")
      c.time_shift_type = TimeShiftType::Linear;
    else
      j.bad("time_shift_type", "= \"" + tst + "\": must be \"exponential\" or \"linear\"");
  } catch (const Error& e) {
    fail("[scheduler] ", e.what());
  }
  c.validate();
  return c;
}

FlowMatchEulerConfig FlowMatchEulerConfig::load(const std::string& path) {
  JsonConfig j = [&] {
    try {
      return JsonConfig::load(path);
    } catch (const Error& e) {
      fail("[scheduler] ", e.what());
    }
  }();
  return from_json(j);
}

void FlowMatchEulerConfig::validate() const {
  if (num_train_timesteps < 1 || num_train_timesteps > (int64_t(1) << 24))
    fail("[scheduler] num_train_timesteps = ", num_train_timesteps, " must be in [1, 16777216]");
  if (!(shift > 0) || !std::isfinite(shift)) fail("[scheduler] shift = ", shift, " must be a finite number > 0");
  if (shift_terminal && *shift_terminal != 0.0 && !(*shift_terminal < 1.0))
    fail("[scheduler] shift_terminal = ", *shift_terminal, " must be < 1 (the final sigma)");
  for (auto [key, v] : {std::pair{"base_shift", base_shift}, std::pair{"max_shift", max_shift}})
    if (v && !std::isfinite(*v)) fail("[scheduler] ", key, " = ", *v, " is not finite");
}

}  // namespace zimage::scheduler
