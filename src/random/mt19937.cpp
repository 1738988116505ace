#include "random/mt19937.h"

namespace zimage::random {

namespace {
constexpr int kShift = 397;                   // the "m" of MT19937
constexpr uint32_t kMatrixA = 0x9908b0dfu;    // twist matrix
constexpr uint32_t kUpperMask = 0x80000000u;  // most significant bit
constexpr uint32_t kLowerMask = 0x7fffffffu;  // the 31 other bits
}  // namespace

Mt19937::Mt19937(uint64_t seed) : seed_(seed) {
  // torch keeps only the low 32 bits of the seed in the state (init_with_uint32).
  state_[0] = uint32_t(seed & 0xffffffffu);
  for (int i = 1; i < kStateSize; ++i) {
    const uint32_t prev = state_[i - 1];
    state_[i] = 1812433253u * (prev ^ (prev >> 30)) + uint32_t(i);
  }
  next_ = kStateSize;
}

void Mt19937::twist() {
  for (int i = 0; i < kStateSize; ++i) {
    const uint32_t y = (state_[i] & kUpperMask) | (state_[(i + 1) % kStateSize] & kLowerMask);
    uint32_t v = state_[(i + kShift) % kStateSize] ^ (y >> 1);
    if (y & 1u) v ^= kMatrixA;
    state_[i] = v;
  }
  next_ = 0;
}

uint32_t Mt19937::operator()() {
  if (next_ >= kStateSize) twist();
  uint32_t y = state_[next_++];
  // Tempering.
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

}  // namespace zimage::random
