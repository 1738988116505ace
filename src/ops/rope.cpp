#include "ops/backend.h"
#include "ops/ops.h"

namespace zimage::ops {

// Follows transformers' apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, where
// rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2]).
void rope_rotate_half_(Tensor& x, const Tensor& cos, const Tensor& sin, bool bf16_steps) {
  ZI_DEVICE_OP(x, rope_rotate_half_, x, cos, sin, bf16_steps);
  if (x.dtype() != DType::F32 || (x.ndim() != 3 && x.ndim() != 4))
    fail("[rope] x must be a float32 [S, H, D] or [B, S, H, D] tensor, got ", dtype_name(x.dtype()), " ",
         shape_str(x.shape()));
  const int64_t S = x.dim(-3), H = x.dim(-2), D = x.dim(-1);
  const int64_t B = x.ndim() == 4 ? x.dim(0) : 1;
  if (D % 2 != 0) fail("[rope] head dim ", D, " is odd");
  const Shape table{S, D};
  if (cos.dtype() != DType::F32 || sin.dtype() != DType::F32 || cos.shape() != table || sin.shape() != table)
    fail("[rope] cos/sin must be float32 ", shape_str(table), ", got ", shape_str(cos.shape()), " and ",
         shape_str(sin.shape()));
  const int64_t half = D / 2;
  const float* cp = cos.f32();
  const float* sp = sin.f32();
  float* xp = x.f32();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) {
      const float* c = cp + s * D;
      const float* sn = sp + s * D;
      for (int64_t h = 0; h < H; ++h) {
        float* v = xp + ((b * S + s) * H + h) * D;
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = v[i], x2 = v[i + half];
          float a0 = x1 * c[i], b0 = -x2 * sn[i];
          float a1 = x2 * c[i + half], b1 = x1 * sn[i + half];
          if (bf16_steps) {
            a0 = round_bf16(a0), b0 = round_bf16(b0), a1 = round_bf16(a1), b1 = round_bf16(b1);
            v[i] = round_bf16(a0 + b0);
            v[i + half] = round_bf16(a1 + b1);
          } else {
            v[i] = a0 + b0;
            v[i + half] = a1 + b1;
          }
        }
      }
    }
}

}  // namespace zimage::ops
