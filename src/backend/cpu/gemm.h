// GEMM entry point with explicit source/destination dtypes (see kernels.h gemm_nt for the
// f32-result form). Only src/ops/ calls this; shapes are already validated.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace zimage::cpu {

// y[M,N] = x[M,K] · w[N,K]^T (+ bias[N] f32).  x and w of dtype `dt` (F32 or BF16), y of dtype
// `yt` (F32, or BF16 for bf16 inputs: the f32 accumulator rounded to nearest even; oneDNN's
// bf16-output kernels may sum the K blocks in another order than the f32-output ones).  Row strides: ldx for x, ldy for
// y (elements).
void gemm_nt_ex(int64_t M, int64_t N, int64_t K, const void* x, int64_t ldx, const void* w, DType dt, const float* bias,
                void* y, int64_t ldy, DType yt);

// The same on AMX tiles (gemm_amx.cpp) for bf16 x and w; returns false (nothing done) when the
// kernel table's level is not amx (cpu_level.h), ZIMAGE_GEMM=onednn is set, or N or K is not a
// multiple of 32. amx_available(): the table's gemm_amx.
bool gemm_amx_bf16(int64_t M, int64_t N, int64_t K, const void* x, int64_t ldx, const void* w, const float* bias,
                   void* y, int64_t ldy, DType yt);
bool amx_available();

}  // namespace zimage::cpu
