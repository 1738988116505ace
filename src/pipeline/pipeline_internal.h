// Internals shared by the pipeline's files.
#pragma once
#include <cstdint>

namespace zimage {
constexpr int kMaxSide = 8192;        // pixels; larger requests are refused before allocating
constexpr int kMaxSteps = 1000;
constexpr int kMaxImages = 64;        // per prompt
constexpr int kMaxSequence = 8192;    // tokens
}  // namespace zimage
