// Flash attention forward for head dim 128, bf16 q/k/v, float32 online softmax, on the tensor
// cores through mma.sync.m16n8k16 (sm_80+ instructions, valid on sm_90).
//
// One block of 4 warps per (64-query tile, query head, item); each warp owns 16 query rows.
// Per 64-key tile: K and V tiles go to shared memory, S = Q K^T (16 x 64 per warp, float32 in
// registers), masking, online softmax in the log2 domain, P rounded to bf16 and O += P V.
// The S accumulator layout of two adjacent n8 tiles is exactly the A-fragment layout of a
// k16 slice, so P never leaves registers.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 .bf16; g = lane / 4, t = lane % 4):
//   A (16x16, row): a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
//   B (16x8, col):  b0 (k 2t..2t+1, n g)  b1 (k 2t+8.., n g)
//   C (16x8 f32):   c0,c1 (g, 2t..2t+1)  c2,c3 (g+8, 2t..2t+1)
// Fragments come from shared memory through ldmatrix (.trans for V), or, with use_ldmatrix
// false, through plain 32-bit / 16-bit shared loads that follow the table above literally.
//
// STATUS: compiled only; not yet run on a GPU when written. tests/cuda/attention_test.cpp checks
// both fragment paths against the CPU reference.
// Tuning left for the device session: cp.async double buffering of K/V, 128-query tiles with
// 8 warps, wgmma (sm_90a) or cuDNN's fused SDPA for Hopper-level throughput.
#include <cuda_bf16.h>

#include <cfloat>
#include <cstdint>

#include "backend/cuda/attention_internal.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/context.h"

namespace zimage::cuda {

namespace {

constexpr int kD = 128;          // head dim
constexpr int kBM = 64;          // queries per block (16 per warp)
constexpr int kBN = 64;          // keys per tile
constexpr int kThreads = 128;    // 4 warps
constexpr int kStride = kD + 8;  // shared row stride in elements: 272 B, conflict-free ldmatrix rows
constexpr size_t kSmemBytes = size_t(kBM + 2 * kBN) * kStride * sizeof(__nv_bfloat16);
constexpr float kLog2e = 1.4426950408889634f;

using bf16 = __nv_bfloat16;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t& r0, uint32_t& r1, const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r0), "=r"(r1) : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t& r0, uint32_t& r1, const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(smem_addr(p)));
}

// c += a · b, 16x8x16, bf16 inputs, f32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ uint32_t pack_raw(bf16 lo, bf16 hi) {
  return uint32_t(__bfloat16_as_ushort(lo)) | (uint32_t(__bfloat16_as_ushort(hi)) << 16);
}
__device__ __forceinline__ uint32_t ld_u32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Copies rows [row0, row0 + 64) of a [rows, 128] bf16 matrix (row stride `stride` elements) into
// shared memory, 16 bytes per thread and step; rows >= `rows` are zero-filled.
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* src, int64_t row0, int64_t rows, int64_t stride) {
  constexpr int kChunksPerRow = kD / 8;
  for (int c = threadIdx.x; c < 64 * kChunksPerRow; c += kThreads) {
    const int r = c / kChunksPerRow, col = (c % kChunksPerRow) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (row0 + r < rows) v = *reinterpret_cast<const uint4*>(src + (row0 + r) * stride + col);
    *reinterpret_cast<uint4*>(dst + r * kStride + col) = v;
  }
}

template <bool kLdmatrix>
__global__ void __launch_bounds__(kThreads) flash_attention_kernel(AttnArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);  // [64][kStride]
  bf16* sK = sQ + kBM * kStride;                 // [64][kStride]
  bf16* sV = sK + kBN * kStride;                 // [64][kStride]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int b = blockIdx.z, h = blockIdx.y, hk = h / (a.Hq / a.Hkv);
  const int64_t q0 = int64_t(blockIdx.x) * kBM;
  const int64_t q_stride = int64_t(a.Hq) * kD, kv_stride = int64_t(a.Hkv) * kD;  // elements between tokens
  const bf16* qb = static_cast<const bf16*>(a.q) + int64_t(b) * a.Sq * q_stride + h * kD;
  const bf16* kb = static_cast<const bf16*>(a.k) + int64_t(b) * a.Sk * kv_stride + hk * kD;
  const bf16* vb = static_cast<const bf16*>(a.v) + int64_t(b) * a.Sk * kv_stride + hk * kD;

  // Visible keys: j < valid, and (causal) j <= i + Sk - Sq for query i.
  const int64_t valid = a.key_valid[b], shift = a.Sk - a.Sq;
  int64_t loop_end = valid;
  if (a.causal) loop_end = min(loop_end, q0 + kBM + shift);  // last query of the tile sees keys < q0 + 64 + shift

  load_tile(sQ, qb, q0, a.Sq, q_stride);
  __syncthreads();

  // This warp's Q rows as A fragments for the 8 k16 slices of the head dim.
  const int wrow = warp * 16;
  uint32_t qf[kD / 16][4];
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
    if (kLdmatrix) {
      const int mi = lane >> 3, r = lane & 7;  // matrix mi: rows +(mi&1)*8, cols +(mi>>1)*8
      ldmatrix_x4(qf[kk], sQ + (wrow + (mi & 1) * 8 + r) * kStride + kk * 16 + (mi >> 1) * 8);
    } else {
      const bf16* p = sQ + (wrow + g) * kStride + kk * 16 + 2 * t;
      qf[kk][0] = ld_u32(p);
      qf[kk][1] = ld_u32(p + 8 * kStride);
      qf[kk][2] = ld_u32(p + 8);
      qf[kk][3] = ld_u32(p + 8 * kStride + 8);
    }
  }

  const int64_t qi0 = q0 + wrow + g, qi1 = qi0 + 8;  // this thread's two query rows
  const float scale_log2 = a.scale * kLog2e;
  float o[kD / 8][4];
#pragma unroll
  for (int n = 0; n < kD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;  // running max (log2 domain), partial sums

  for (int64_t n0 = 0; n0 < loop_end; n0 += kBN) {
    __syncthreads();  // every warp is done with the previous K/V tile
    load_tile(sK, kb, n0, a.Sk, kv_stride);
    load_tile(sV, vb, n0, a.Sk, kv_stride);
    __syncthreads();

    // S = Q K^T: 8 n8 tiles of keys.
    float s[kBN / 8][4];
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kD / 16; ++kk) {
        uint32_t b0, b1;
        if (kLdmatrix) {
          const int mi = (lane >> 3) & 1, r = lane & 7;  // matrix 0: d 0..7, matrix 1: d 8..15
          ldmatrix_x2(b0, b1, sK + (j * 8 + r) * kStride + kk * 16 + mi * 8);
        } else {
          const bf16* p = sK + (j * 8 + g) * kStride + kk * 16 + 2 * t;
          b0 = ld_u32(p);
          b1 = ld_u32(p + 8);
        }
        mma_bf16(s[j], qf[kk], b0, b1);
      }
    }

    // Mask, scale to the log2 domain, row maxima (a row's 64 values sit in the 4 threads of a quad).
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = n0 + j * 8 + 2 * t + (e & 1);
        const int64_t qi = e < 2 ? qi0 : qi1;
        const bool ok = key < valid && (!a.causal || key <= qi + shift);
        s[j][e] = ok ? s[j][e] * scale_log2 : -INFINITY;
        if (e < 2)
          mx0 = fmaxf(mx0, s[j][e]);
        else
          mx1 = fmaxf(mx1, s[j][e]);
      }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float new0 = fmaxf(m0, mx0), new1 = fmaxf(m1, mx1);
    // A row with no visible key yet keeps max -inf: subtract 0 so exp2 gives 0, not NaN.
    const float ref0 = new0 == -INFINITY ? 0.f : new0, ref1 = new1 == -INFINITY ? 0.f : new1;
    const float alpha0 = exp2f(m0 - ref0), alpha1 = exp2f(m1 - ref1);  // rescale of the old state
    m0 = new0;
    m1 = new1;
    float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) {
      s[j][0] = exp2f(s[j][0] - ref0);
      s[j][1] = exp2f(s[j][1] - ref0);
      s[j][2] = exp2f(s[j][2] - ref1);
      s[j][3] = exp2f(s[j][3] - ref1);
      sum0 += s[j][0] + s[j][1];
      sum1 += s[j][2] + s[j][3];
    }
    l0 = l0 * alpha0 + sum0;  // per-thread partial; the quad's partials are added at the end
    l1 = l1 * alpha1 + sum1;
#pragma unroll
    for (int n = 0; n < kD / 8; ++n) {
      o[n][0] *= alpha0;
      o[n][1] *= alpha0;
      o[n][2] *= alpha1;
      o[n][3] *= alpha1;
    }

    // O += P V: P's k16 slice kk2 is S tiles 2*kk2 and 2*kk2+1, already in A-fragment order.
#pragma unroll
    for (int kk2 = 0; kk2 < kBN / 16; ++kk2) {
      uint32_t pa[4];
      pa[0] = pack_bf16(s[2 * kk2][0], s[2 * kk2][1]);
      pa[1] = pack_bf16(s[2 * kk2][2], s[2 * kk2][3]);
      pa[2] = pack_bf16(s[2 * kk2 + 1][0], s[2 * kk2 + 1][1]);
      pa[3] = pack_bf16(s[2 * kk2 + 1][2], s[2 * kk2 + 1][3]);
#pragma unroll
      for (int n = 0; n < kD / 8; ++n) {
        uint32_t b0, b1;
        if (kLdmatrix) {
          const int mi = (lane >> 3) & 1, r = lane & 7;  // matrix 0: keys 0..7, matrix 1: keys 8..15
          ldmatrix_x2_trans(b0, b1, sV + (kk2 * 16 + mi * 8 + r) * kStride + n * 8);
        } else {
          const bf16* p = sV + (kk2 * 16 + 2 * t) * kStride + n * 8 + g;
          b0 = pack_raw(p[0], p[kStride]);
          b1 = pack_raw(p[8 * kStride], p[9 * kStride]);
        }
        mma_bf16(o[n], pa, b0, b1);
      }
    }
  }

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;  // no visible key: zeros
#pragma unroll
  for (int n = 0; n < kD / 8; ++n) {
    const int col = n * 8 + 2 * t;
    if (qi0 < a.Sq) {
      const int64_t off = (int64_t(b) * a.Sq + qi0) * q_stride + h * kD + col;
      store_f(a.o, a.ot, off, o[n][0] * inv0);
      store_f(a.o, a.ot, off + 1, o[n][1] * inv0);
    }
    if (qi1 < a.Sq) {
      const int64_t off = (int64_t(b) * a.Sq + qi1) * q_stride + h * kD + col;
      store_f(a.o, a.ot, off, o[n][2] * inv1);
      store_f(a.o, a.ot, off + 1, o[n][3] * inv1);
    }
  }
}

template <bool kLdmatrix>
void launch(const AttnArgs& a) {
  static bool raised = false;  // > 48 KiB of dynamic shared memory needs an opt-in, once per kernel
  if (!raised) {
    ZI_CUDA_CHECK(cudaFuncSetAttribute(flash_attention_kernel<kLdmatrix>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(kSmemBytes)));
    raised = true;
  }
  const dim3 grid(unsigned((a.Sq + kBM - 1) / kBM), unsigned(a.Hq), unsigned(a.B));
  flash_attention_kernel<kLdmatrix><<<grid, kThreads, kSmemBytes, ctx().stream>>>(a);
  ZI_CUDA_CHECK_LAUNCH("flash_attention_kernel");
}

}  // namespace

void launch_flash_attention(const AttnArgs& a, bool use_ldmatrix) {
  if (a.D != kD) fail("[attention] flash kernel built for head dim ", kD, ", got ", a.D);
  if (use_ldmatrix)
    launch<true>(a);
  else
    launch<false>(a);
}

}  // namespace zimage::cuda
