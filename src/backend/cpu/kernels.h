// CPU kernels behind zimage::ops. Only src/ops/ calls these; shapes are already validated.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace zimage::cpu {

// y[M,N] = x[M,K] · w[N,K]^T (+ bias[N] f32).  x and w of dtype `dt` (F32 or BF16); y f32.
void gemm_nt(int64_t M, int64_t N, int64_t K, const void* x, const void* w, DType dt,
             const float* bias, float* y);

// Flash-style attention, see ops::attention. Pointers are [B, S, H, D] contiguous.
void attention(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq,
               int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal,
               const int64_t* key_valid);

// Attention as torch's CPU flash kernel computes it for bf16 tensors, see ops::attention_torch_bf16.
void attention_torch_bf16(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq,
                          int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal,
                          const int64_t* key_valid);

}  // namespace zimage::cpu
