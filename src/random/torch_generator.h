// A reproduction of torch's CPU generator: torch.Generator("cpu").manual_seed(seed) followed by
// torch.randn(shape, generator=g, dtype=torch.float32) gives the same bits here, and successive
// draws continue the same stream (torch 2.x, x86 build: AVX2 / AVX512 CPU capability).
//
// How torch samples a float32 normal tensor of n elements (aten normal_kernel):
//   n >= 16: all n uniforms u = (random() & 0xffffff) * 2^-24 are drawn first, then every block
//            of 16 becomes Box-Muller normals (see box_muller.h); when n % 16 != 0 the last 16
//            elements are overwritten by 16 freshly drawn uniforms, transformed the same way.
//   n < 16:  each element is at::normal_distribution<double>(0, 1) cast to float: uniforms
//            u = (random64() & (2^53-1)) * 2^-53, r = sqrt(-2 log1p(-u2)), t = 2 pi u1,
//            value r cos t, and r sin t is cached in the generator for the next scalar draw.
#pragma once
#include <cstdint>
#include <optional>

#include "core/tensor.h"
#include "random/mt19937.h"

namespace zimage::random {

// The kind of torch generator a seed refers to. Only the CPU (mt19937) generator is
// implemented; torch's CUDA generator (Philox4x32-10 with curand's normal transform) has its
// own slot so callers can name it and get a clear error.
enum class GeneratorKind { CPU, CUDA_PHILOX };
const char* generator_kind_name(GeneratorKind kind);

class TorchGenerator {
 public:
  // torch.Generator(device).manual_seed(seed). Kind CUDA_PHILOX is an Error (not implemented).
  explicit TorchGenerator(uint64_t seed, GeneratorKind kind = GeneratorKind::CPU);

  GeneratorKind kind() const { return kind_; }
  uint64_t initial_seed() const { return engine_.seed(); }

  // CPUGeneratorImpl::random(): the next 32-bit mt19937 output.
  uint32_t random();
  // CPUGeneratorImpl::random64(): two 32-bit outputs, the first is the high half.
  uint64_t random64();

  // torch.randn(shape, generator=this, dtype=torch.float32).
  Tensor randn(const Shape& shape);
  // The same draw written into out[0..n).
  void randn_fill(float* out, int64_t n);

 private:
  float uniform_float();    // at::uniform_real_distribution<float>(0, 1)
  double uniform_double();  // at::uniform_real_distribution<double>(0, 1)
  double normal_double();   // at::normal_distribution<double>(0, 1), with the cached sample

  GeneratorKind kind_;
  Mt19937 engine_;
  std::optional<double> next_double_normal_;  // CPUGeneratorImpl::next_double_normal_sample
};

}  // namespace zimage::random
