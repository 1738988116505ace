// diffusers' VaeImageProcessor.preprocess for the img2img / inpaint pipelines (PIL input, sizes
// already at the target): the image processor (do_normalize) and the mask processor
// (do_normalize=False, do_binarize=True, do_convert_grayscale=True).
#pragma once
#include "core/tensor.h"
#include "zimage/image.h"

namespace zimage {

// PIL's Image.resize((width, height), Image.LANCZOS) of an 8-bit image (each channel on its own,
// as PIL does for L and RGB; RGBA would be premultiplied there, so convert first): Pillow's
// Resample.c with its fixed-point coefficients, bit for bit. Same size: a copy.
Image resize_lanczos(const Image& img, int width, int height);

// convert("RGB"), np.array(...).astype(float32) / 255, then 2 * x - 1 (float32): [1, 3, H, W].
Tensor preprocess_image(const Image& img);
// convert("L"), / 255 (float32), then binarised: < 0.5 -> 0, >= 0.5 -> 1: [1, 1, H, W].
Tensor preprocess_mask(const Image& img);
// torch.nn.functional.interpolate(mask, size=(h, w), mode="nearest") of a [B, C, H, W] tensor.
Tensor interpolate_nearest(const Tensor& x, int64_t h, int64_t w);

}  // namespace zimage
