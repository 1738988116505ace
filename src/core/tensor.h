// zimage::Tensor and Shape are public (include/zimage/tensor.h): CallParams and PipelineOutput
// carry latents and embeddings as Tensors. This path stays for the engine's own sources.
#pragma once
#include "zimage/tensor.h"
