// Token layout kernels: patchify / unpatchify (transformer/patchify.h's order) and the
// sinusoidal timestep embedding. One thread per element.
#include <cmath>

#include "backend/cuda/common.cuh"
#include "backend/cuda/context.h"

namespace zimage::cuda {

namespace {

constexpr int kThreads = 256;

// For token element i (token t, in-token j = ((pf * pH + ph) * pW + pw) * C + c) returns the
// image element [c, f * pF + pf, h * pH + ph, w * pW + pw].
__device__ __forceinline__ int64_t image_index(int64_t i, PatchDims p) {
  const int64_t P = p.pF * p.pH * p.pW * p.C;
  const int64_t Ht = p.H / p.pH, Wt = p.W / p.pW;
  const int64_t t = i / P, j = i % P;
  const int64_t c = j % p.C, pw = (j / p.C) % p.pW, ph = (j / (p.C * p.pW)) % p.pH, pf = j / (p.C * p.pW * p.pH);
  const int64_t w = t % Wt, h = (t / Wt) % Ht, f = t / (Wt * Ht);
  return ((c * p.F + f * p.pF + pf) * p.H + h * p.pH + ph) * p.W + w * p.pW + pw;
}

__global__ void patch_kernel(const void* src, DType st, void* dst, DType dt, PatchDims p, int64_t n, bool to_tokens) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t img = image_index(i, p);
    if (to_tokens)
      store_f(dst, dt, i, load_f(src, st, img));
    else
      store_f(dst, dt, img, load_f(src, st, i));
  }
}

__global__ void timestep_kernel(const float* t, float* emb, int64_t B, int64_t dim, float neg_log_period) {
  const int64_t half = dim / 2, n = B * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / half, k = i % half;
    const float arg = t[b] * expf(neg_log_period * float(k) / float(half));
    emb[b * dim + k] = cosf(arg);
    emb[b * dim + half + k] = sinf(arg);
  }
}

void check_dims(const PatchDims& p) {
  if (p.C <= 0 || p.F <= 0 || p.H <= 0 || p.W <= 0 || p.pF <= 0 || p.pH <= 0 || p.pW <= 0 || p.F % p.pF || p.H % p.pH ||
      p.W % p.pW)
    fail("[patchify] latent [", p.C, ", ", p.F, ", ", p.H, ", ", p.W, "] is not divisible into patches [", p.pF, ", ",
         p.pH, ", ", p.pW, "]");
}

void launch(const DeviceTensor& src, DeviceTensor& dst, const PatchDims& p, bool to_tokens) {
  const int64_t n = src.numel();
  const unsigned cap = unsigned(ctx().sm_count) * 16u, g = grid_for(n, kThreads);
  const unsigned grid = g < cap ? g : cap;  // a `<` inside <<<...>>> misleads clang-format
  patch_kernel<<<grid, kThreads, 0, ctx().stream>>>(src.data(), src.dtype(), dst.data(), dst.dtype(), p, n, to_tokens);
  ZI_CUDA_CHECK_LAUNCH("patch_kernel");
}

}  // namespace

DeviceTensor patchify(const DeviceTensor& image, const PatchDims& p, DType out) {
  check_dims(p);
  if (image.shape() != Shape{p.C, p.F, p.H, p.W})
    fail("[patchify] image ", shape_str(image.shape()), " is not ", shape_str({p.C, p.F, p.H, p.W}));
  const int64_t tokens = (p.F / p.pF) * (p.H / p.pH) * (p.W / p.pW);
  DeviceTensor y = DeviceTensor::empty(out, {tokens, p.pF * p.pH * p.pW * p.C});  // [tokens, patch_dim]
  launch(image, y, p, true);
  return y;
}

DeviceTensor unpatchify(const DeviceTensor& tokens, const PatchDims& p, DType out) {
  check_dims(p);
  const Shape ts{(p.F / p.pF) * (p.H / p.pH) * (p.W / p.pW), p.pF * p.pH * p.pW * p.C};
  if (tokens.shape() != ts) fail("[unpatchify] tokens ", shape_str(tokens.shape()), " are not ", shape_str(ts));
  DeviceTensor y = DeviceTensor::empty(out, {p.C, p.F, p.H, p.W});  // [C, F, H, W]
  launch(tokens, y, p, false);
  return y;
}

DeviceTensor timestep_embedding(const std::vector<float>& t, int64_t dim, double max_period) {
  const int64_t B = int64_t(t.size());
  if (dim <= 0) fail("[timestep_embedding] dim ", dim, " must be positive");
  DeviceTensor emb = DeviceTensor::zeros(DType::F32, {B, dim});  // odd dim: last column stays zero
  if (B == 0 || dim < 2) return emb;
  DeviceTensor td = DeviceTensor::upload(Tensor::from_f32({B}, t));
  const float c = float(-std::log(max_period));  // float32, as the CPU TimestepEmbedder
  timestep_kernel<<<grid_for(B * (dim / 2), kThreads), kThreads, 0, ctx().stream>>>(
      static_cast<const float*>(td.data()), static_cast<float*>(emb.data()), B, dim, c);
  ZI_CUDA_CHECK_LAUNCH("timestep_kernel");
  return emb;
}

}  // namespace zimage::cuda
