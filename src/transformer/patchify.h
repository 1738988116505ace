// Patchify / unpatchify of transformer_z_image.py (_patchify_image, unpatchify):
// [C, F, H, W] <-> tokens [(F/pF)*(H/pH)*(W/pW), pF*pH*pW*C] in the order
// "c (f pf) (h ph) (w pw) -> (f h w) (pf ph pw c)".
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace zimage::transformer {

struct PatchGrid {
  int64_t C = 0, F = 0, H = 0, W = 0;  // latent size
  int64_t pF = 1, pH = 2, pW = 2;      // patch size
  int64_t f_tokens() const { return F / pF; }
  int64_t h_tokens() const { return H / pH; }
  int64_t w_tokens() const { return W / pW; }
  int64_t tokens() const { return f_tokens() * h_tokens() * w_tokens(); }
  int64_t patch_dim() const { return pF * pH * pW * C; }
};

// Writes the tokens of `image` ([C, F, H, W] f32) into `dst` (tokens() rows of patch_dim()).
void patchify(const Tensor& image, const PatchGrid& g, float* dst);
// Reads tokens() rows of patch_dim() from `src` into a new [C, F, H, W] tensor.
Tensor unpatchify(const float* src, const PatchGrid& g);

}  // namespace zimage::transformer
