// Rotary position embeddings, in place, one thread per rotated pair.
//   interleaved (Z-Image): (x[2i] + i x[2i+1]) * (cos + i sin), table cs [T, D/2, 2]
//   rotate-half (Qwen3):   x[i] <- x[i] cos[i] - x[i+D/2] sin[i],
//                          x[i+D/2] <- x[i+D/2] cos[i+D/2] + x[i] sin[i+D/2], tables [S, D]
#include "backend/cuda/common.cuh"
#include "backend/cuda/context.h"

namespace zimage::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void rope_interleaved_kernel(void* x, DType xt, const float* cs, int64_t T, int64_t H, int64_t D) {
  const int64_t half = D / 2, n = T * H * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i % half, t = i / (H * half);
    const int64_t e = (i / half) * D + 2 * p;  // element of the pair's real part
    const float re = load_f(x, xt, e), im = load_f(x, xt, e + 1);
    const float co = cs[(t * half + p) * 2], si = cs[(t * half + p) * 2 + 1];
    store_f(x, xt, e, re * co - im * si);
    store_f(x, xt, e + 1, re * si + im * co);
  }
}

__global__ void rope_rotate_half_kernel(void* x, DType xt, const float* cos, const float* sin, int64_t B, int64_t S,
                                        int64_t H, int64_t D) {
  const int64_t half = D / 2, n = B * S * H * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i % half, s = (i / (H * half)) % S;
    const int64_t e = (i / half) * D + p;
    const float x1 = load_f(x, xt, e), x2 = load_f(x, xt, e + half);
    const float* c = cos + s * D;
    const float* sn = sin + s * D;
    store_f(x, xt, e, x1 * c[p] - x2 * sn[p]);
    store_f(x, xt, e + half, x2 * c[p + half] + x1 * sn[p + half]);
  }
}

unsigned blocks_for(int64_t n) {
  const unsigned cap = unsigned(ctx().sm_count) * 16u;
  const unsigned g = grid_for(n, kThreads);
  return g < cap ? g : cap;
}

}  // namespace

void rope_interleaved_(DeviceTensor& x, const DeviceTensor& cs) {
  if (x.ndim() != 3 || x.dtype() == DType::F16)
    fail("[rope_interleaved] x must be a float32/bfloat16 [T, H, D] tensor, got ", dtype_name(x.dtype()), " ",
         shape_str(x.shape()));
  const int64_t T = x.dim(0), H = x.dim(1), D = x.dim(2);
  if (D % 2 != 0) fail("[rope_interleaved] head dim ", D, " is odd");
  if (cs.dtype() != DType::F32 || cs.shape() != Shape{T, D / 2, 2})
    fail("[rope_interleaved] cos/sin table must be float32 ", shape_str({T, D / 2, 2}), ", got ",
         dtype_name(cs.dtype()), " ", shape_str(cs.shape()));
  if (x.numel() == 0) return;
  rope_interleaved_kernel<<<blocks_for(x.numel() / 2), kThreads, 0, ctx().stream>>>(
      x.data(), x.dtype(), static_cast<const float*>(cs.data()), T, H, D);
  ZI_CUDA_CHECK_LAUNCH("rope_interleaved_kernel");
}

void rope_rotate_half_(DeviceTensor& x, const DeviceTensor& cos, const DeviceTensor& sin) {
  if ((x.ndim() != 3 && x.ndim() != 4) || x.dtype() == DType::F16)
    fail("[rope] x must be a float32/bfloat16 [S, H, D] or [B, S, H, D] tensor, got ", dtype_name(x.dtype()), " ",
         shape_str(x.shape()));
  const int64_t S = x.dim(-3), H = x.dim(-2), D = x.dim(-1), B = x.ndim() == 4 ? x.dim(0) : 1;
  if (D % 2 != 0) fail("[rope] head dim ", D, " is odd");
  const Shape table{S, D};
  if (cos.dtype() != DType::F32 || sin.dtype() != DType::F32 || cos.shape() != table || sin.shape() != table)
    fail("[rope] cos/sin must be float32 ", shape_str(table), ", got ", shape_str(cos.shape()), " and ",
         shape_str(sin.shape()));
  if (x.numel() == 0) return;
  rope_rotate_half_kernel<<<blocks_for(x.numel() / 2), kThreads, 0, ctx().stream>>>(
      x.data(), x.dtype(), static_cast<const float*>(cos.data()), static_cast<const float*>(sin.data()), B, S, H, D);
  ZI_CUDA_CHECK_LAUNCH("rope_rotate_half_kernel");
}

}  // namespace zimage::cuda
