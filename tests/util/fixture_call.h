// The pipeline call of a reference fixture set's MANIFEST.json (prompt, size, steps, guidance,
// seed; latents out), as the LoRA, fp8 and GGUF parity fixtures record it.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "zimage/pipeline.h"

namespace zimage::test {

inline CallParams fixture_call(const nlohmann::json& m) {
  CallParams p;
  p.prompt = {m["prompt"].get<std::string>()};
  p.height = m["height"].get<int>();
  p.width = m["width"].get<int>();
  p.num_inference_steps = m["num_inference_steps"].get<int>();
  p.guidance_scale = m["guidance_scale"].get<float>();
  p.generator = {{m["seed"].get<uint64_t>(), "cpu"}};
  p.output_type = OutputType::Latent;
  return p;
}

}  // namespace zimage::test
