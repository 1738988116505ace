// Internals shared by the pipeline's files.
#pragma once
#include <cstdint>

namespace zimage {
constexpr int kMaxSide = 8192;  // pixels; larger requests are refused before allocating
constexpr int kMaxSteps = 1000;
constexpr int kMaxImages = 64;      // per prompt
constexpr int kMaxSequence = 8192;  // tokens
struct CallParams;
// The strength of an img2img / inpaint call (given, or diffusers' default: 0.6, inpainting 1.0).
double edit_strength(const CallParams& p);
// diffusers' get_timesteps: the first of num_inference_steps steps that strength keeps.
int edit_start_step(int num_inference_steps, double strength);
}  // namespace zimage
