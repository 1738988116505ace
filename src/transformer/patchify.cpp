#include "transformer/patchify.h"

namespace zimage::transformer {

namespace {
// Visits every element: token (f, h, w), in-token index ((pf * pH + ph) * pW + pw) * C + c,
// image element [c, f * pF + pf, h * pH + ph, w * pW + pw].
template <class Fn>
void for_each_element(const PatchGrid& g, Fn fn) {
  const int64_t Ft = g.f_tokens(), Ht = g.h_tokens(), Wt = g.w_tokens(), P = g.patch_dim();
  for (int64_t f = 0; f < Ft; ++f)
    for (int64_t h = 0; h < Ht; ++h)
      for (int64_t w = 0; w < Wt; ++w) {
        const int64_t token = (f * Ht + h) * Wt + w;
        for (int64_t pf = 0; pf < g.pF; ++pf)
          for (int64_t ph = 0; ph < g.pH; ++ph)
            for (int64_t pw = 0; pw < g.pW; ++pw)
              for (int64_t c = 0; c < g.C; ++c) {
                const int64_t j = ((pf * g.pH + ph) * g.pW + pw) * g.C + c;
                const int64_t img = ((c * g.F + f * g.pF + pf) * g.H + h * g.pH + ph) * g.W + w * g.pW + pw;
                fn(token * P + j, img);
              }
      }
}
}  // namespace

void patchify(const Tensor& image, const PatchGrid& g, float* dst) {
  const float* src = image.f32();
  for_each_element(g, [&](int64_t t, int64_t i) { dst[t] = src[i]; });
}

Tensor unpatchify(const float* src, const PatchGrid& g) {
  Tensor out = Tensor::empty(DType::F32, {g.C, g.F, g.H, g.W});
  float* dst = out.f32();
  for_each_element(g, [&](int64_t t, int64_t i) { dst[i] = src[t]; });
  return out;
}

}  // namespace zimage::transformer
