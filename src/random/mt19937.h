// The Mersenne Twister MT19937 engine as torch's CPU generator uses it
// (aten/src/ATen/core/MT19937RNGEngine.h): seeded with the low 32 bits of the 64-bit seed
// through the standard init_genrand recurrence; outputs are the standard tempered words.
#pragma once
#include <array>
#include <cstdint>

namespace zimage::random {

class Mt19937 {
 public:
  static constexpr int kStateSize = 624;
  explicit Mt19937(uint64_t seed = 5489);

  // The seed given to the constructor (torch's initial_seed()).
  uint64_t seed() const { return seed_; }
  // Next 32-bit output.
  uint32_t operator()();

 private:
  void twist();  // regenerates all 624 words
  uint64_t seed_;
  std::array<uint32_t, kStateSize> state_{};
  int next_ = kStateSize;  // index of the next word to temper; kStateSize means "twist first"
};

}  // namespace zimage::random
