#include "scheduler/schedule_math.h"

#include <cmath>

#include "core/error.h"

namespace zimage::scheduler {

std::vector<float> torch_linspace_f32(double start_d, double end_d, int64_t steps) {
  if (steps < 0) fail("[scheduler] linspace: number of steps must be non-negative, got ", steps);
  std::vector<float> out(static_cast<size_t>(steps));
  if (steps == 0) return out;
  const float start = float(start_d), end = float(end_d);
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / float(steps - 1);
  const int64_t halfway = steps / 2;
  for (int64_t i = 0; i < steps; ++i)
    out[size_t(i)] = i < halfway ? std::fma(step, float(i), start) : std::fma(-step, float(steps - i - 1), end);
  return out;
}

std::vector<double> numpy_linspace_f64(double start, double stop, int64_t num) {
  if (num < 0) fail("[scheduler] linspace: number of samples must be non-negative, got ", num);
  std::vector<double> y(static_cast<size_t>(num));
  if (num == 0) return y;
  const double delta = stop - start;
  const int64_t div = num - 1;
  if (div > 0) {
    const double step = delta / double(div);
    for (int64_t i = 0; i < num; ++i) {
      double v = double(i);
      if (step == 0) {
        v = v / double(div);
        v = v * delta;
      } else {
        v = v * step;
      }
      y[size_t(i)] = v + start;
    }
    y[size_t(num - 1)] = stop;
  } else {
    y[0] = 0.0 * delta + start;
  }
  return y;
}

}  // namespace zimage::scheduler
