#include "random/torch_generator.h"

#include <cmath>

#include "core/error.h"
#include "random/box_muller.h"

namespace zimage::random {

const char* generator_kind_name(GeneratorKind kind) {
  switch (kind) {
    case GeneratorKind::CPU:
      return "cpu";
    case GeneratorKind::CUDA_PHILOX:
      return "cuda (philox)";
  }
  return "?";
}

TorchGenerator::TorchGenerator(uint64_t seed, GeneratorKind kind) : kind_(kind), engine_(seed) {
  if (kind == GeneratorKind::CUDA_PHILOX)
    fail("[random] torch CUDA (Philox) generator is not implemented yet (seed ", seed, "); use the CPU generator");
}

uint32_t TorchGenerator::random() { return engine_(); }

uint64_t TorchGenerator::random64() {
  const uint32_t hi = engine_();
  const uint32_t lo = engine_();
  return (uint64_t(hi) << 32) | lo;
}

float TorchGenerator::uniform_float() {
  // transformation::uniform_real: (v & (2^24 - 1)) * 2^-24, then * (to - from) + from (exact).
  return float(random() & 0xffffffu) * (1.0f / 16777216.0f);
}

double TorchGenerator::uniform_double() {
  return double(random64() & ((uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

double TorchGenerator::normal_double() {
  if (next_double_normal_) {
    const double v = *next_double_normal_;
    next_double_normal_.reset();
    return v;
  }
  const double u1 = uniform_double();
  const double u2 = uniform_double();
  const double r = std::sqrt(-2.0 * std::log1p(-u2));
  const double theta = 2.0 * 3.14159265358979323846 * u1;
  next_double_normal_ = r * std::sin(theta);
  return r * std::cos(theta);
}

void TorchGenerator::randn_fill(float* out, int64_t n) {
  if (n < 0) fail("[random] randn: negative element count ", n);
  if (n == 0) return;
  if (n < 16) {
    // Scalar path: normal_distribution<double> per element, rounded to float.
    for (int64_t i = 0; i < n; ++i) out[i] = float(normal_double());
    return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = uniform_float();
  for (int64_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i, 0.0f, 1.0f);
  if (n % 16 != 0) {
    // torch recomputes the last 16 values from fresh uniforms.
    float* tail = out + n - 16;
    for (int i = 0; i < 16; ++i) tail[i] = uniform_float();
    normal_fill_16(tail, 0.0f, 1.0f);
  }
}

Tensor TorchGenerator::randn(const Shape& shape) {
  for (auto d : shape)
    if (d < 0) fail("[random] randn: negative dimension in shape ", shape_str(shape));
  Tensor t = Tensor::empty(DType::F32, shape);
  randn_fill(t.f32(), t.numel());
  return t;
}

}  // namespace zimage::random
