// VaeImageProcessor.postprocess (diffusers/image_processor.py), output_type "np" and "pil".
#pragma once
#include <vector>

#include "core/tensor.h"
#include "zimage/image.h"

namespace zimage {

// output_type="np": decoded [B, C, H, W] (float32, bfloat16 or float16, the VAE's dtype) ->
// float32 [B, H, W, C] in [0, 1]. Mirrors, step by step:
//   image = (image * 0.5 + 0.5).clamp(0, 1)        # denormalize, in the tensor's dtype
//   image = image.cpu().permute(0, 2, 3, 1).float().numpy()
// For bf16/f16 every torch op computes in float32 and rounds its result to the dtype, and so does
// this. NaN survives the clamp, as in torch. denormalize=false skips the first line
// (VaeImageProcessor(do_normalize=False)).
Tensor postprocess_float(const Tensor& decoded, bool denormalize = true);

// output_type="pil": the above, then numpy_to_pil:
//   images = (images * 255).round().astype("uint8")
// in float32, rounding half to even (numpy's round). NaN becomes 0 (what numpy's cast gives on x86).
// C must be 1 (gray, mode "L"), 3 (RGB) or 4 (RGBA).
std::vector<Image> postprocess(const Tensor& decoded, bool denormalize = true);

// numpy_to_pil alone, for a float32 [B, H, W, C] array as postprocess_float returns.
std::vector<Image> float_to_images(const Tensor& nhwc);

// One value of the above: round_half_even(v * 255) as uint8, NaN -> 0. v must be in [0, 1] or NaN.
uint8_t to_uint8(float v);

}  // namespace zimage
