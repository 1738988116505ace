// Native attention: the correctness fallback. One block per (query, head, item); the scores of
// the query against every visible key are materialised in shared memory, then a plain softmax
// and a weighted sum of the values. Slow (K is re-read per query), simple and any dtype / D.
#include <cfloat>

#include "backend/cuda/attention_internal.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/context.h"

namespace zimage::cuda {

namespace {

constexpr int kThreads = 128;

__device__ float block_reduce(float v, float* scratch, bool is_max) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  v = is_max ? warp_max(v) : warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = is_max ? -FLT_MAX : 0.f;
  for (int i = 0; i < nw; ++i) r = is_max ? fmaxf(r, scratch[i]) : r + scratch[i];
  return r;
}

__global__ void native_attention_kernel(AttnArgs a) {
  extern __shared__ float smem[];
  const int D = a.D;
  float* sq = smem;     // [D] the query, float
  float* red = sq + D;  // [32] reduction scratch
  float* p = red + 32;  // [Sk] scores, then probabilities
  const int64_t i = blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z, hk = h / (a.Hq / a.Hkv);
  const int64_t q_off = ((int64_t(b) * a.Sq + i) * a.Hq + h) * D;
  int64_t end = a.key_valid[b];
  if (a.causal) end = min(end, i + a.Sk - a.Sq + 1);
  if (end <= 0) {  // no visible key: zeros, as the CPU op
    for (int d = threadIdx.x; d < D; d += blockDim.x) store_f(a.o, a.ot, q_off + d, 0.f);
    return;
  }
  for (int d = threadIdx.x; d < D; d += blockDim.x) sq[d] = load_f(a.q, a.qt, q_off + d);
  __syncthreads();
  float mx = -FLT_MAX;
  for (int64_t j = threadIdx.x; j < end; j += blockDim.x) {
    const int64_t k_off = ((int64_t(b) * a.Sk + j) * a.Hkv + hk) * D;
    float dot = 0.f;
    for (int d = 0; d < D; ++d) dot += sq[d] * load_f(a.k, a.qt, k_off + d);
    p[j] = dot * a.scale;
    mx = fmaxf(mx, p[j]);
  }
  mx = block_reduce(mx, red, true);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < end; j += blockDim.x) {
    p[j] = expf(p[j] - mx);
    sum += p[j];
  }
  sum = block_reduce(sum, red, false);  // its barriers also publish p[]
  const float inv = 1.f / sum;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.f;
    for (int64_t j = 0; j < end; ++j) acc += p[j] * load_f(a.v, a.qt, ((int64_t(b) * a.Sk + j) * a.Hkv + hk) * D + d);
    store_f(a.o, a.ot, q_off + d, acc * inv);
  }
}

size_t smem_bytes(int D, int64_t Sk) { return size_t(D + 32 + Sk) * sizeof(float); }

}  // namespace

int64_t native_attention_max_keys(int D) {
  const size_t limit = ctx().smem_optin;
  return int64_t(limit / sizeof(float)) - D - 32;
}

void launch_native_attention(const AttnArgs& a) {
  const size_t smem = smem_bytes(a.D, a.Sk);
  static size_t raised = 48 * 1024;
  if (smem > raised) {
    ZI_CUDA_CHECK(
        cudaFuncSetAttribute(native_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    raised = smem;
  }
  const dim3 grid(unsigned(a.Sq), unsigned(a.Hq), unsigned(a.B));
  native_attention_kernel<<<grid, kThreads, smem, ctx().stream>>>(a);
  ZI_CUDA_CHECK_LAUNCH("native_attention_kernel");
}

}  // namespace zimage::cuda
