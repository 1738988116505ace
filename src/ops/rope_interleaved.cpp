// Rotary position embedding on interleaved pairs (x[2i], x[2i+1]) as complex multiplication,
// the form Z-Image uses (torch.view_as_complex(x.reshape(..., -1, 2)) * freqs_cis).
#include "ops/backend.h"
#include "ops/ops.h"
#include "ops/row_kernels.h"

namespace zimage::ops {

void detail::rope_pairs(float* v, const float* c, int64_t D) {
  for (int64_t i = 0; i < D / 2; ++i) {
    const float re = v[2 * i], im = v[2 * i + 1];
    const float co = c[2 * i], si = c[2 * i + 1];
    v[2 * i] = re * co - im * si;
    v[2 * i + 1] = re * si + im * co;
  }
}

void rope_interleaved_(Tensor& x, const Tensor& cs) {
  ZI_DEVICE_OP(x, rope_interleaved_, x, cs);
  if (x.ndim() != 3 || x.dtype() != DType::F32)
    fail("[rope_interleaved] x must be a float32 [T, H, D] tensor, got ", dtype_name(x.dtype()), " ",
         shape_str(x.shape()));
  const int64_t T = x.dim(0), H = x.dim(1), D = x.dim(2);
  if (D % 2 != 0) fail("[rope_interleaved] head dim ", D, " is odd");
  if (cs.dtype() != DType::F32 || cs.shape() != Shape{T, D / 2, 2})
    fail("[rope_interleaved] cos/sin table must be float32 ", shape_str({T, D / 2, 2}), ", got ",
         dtype_name(cs.dtype()), " ", shape_str(cs.shape()));
  float* xp = x.f32();
  const float* cp = cs.f32();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* c = cp + t * D;  // [D/2, 2] (cos, sin)
    for (int64_t h = 0; h < H; ++h) detail::rope_pairs(xp + (t * H + h) * D, c, D);
  }
}

}  // namespace zimage::ops
