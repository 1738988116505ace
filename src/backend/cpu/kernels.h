// CPU kernels behind zimage::ops. Only src/ops/ calls these; shapes are already validated. The
// entry points with ISA-specific versions dispatch through the kernel table (cpu_level.h).
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace zimage::cpu {

// y[M,N] = x[M,K] · w[N,K]^T (+ bias[N] f32).  x and w of dtype `dt` (F32 or BF16); y f32.
void gemm_nt(int64_t M, int64_t N, int64_t K, const void* x, const void* w, DType dt, const float* bias, float* y);

// Flash-style attention, see ops::attention. Pointers are [B, S, H, D] contiguous.
void attention(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
               int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid);

// Attention as torch's CPU flash kernel computes it for bf16 tensors, see ops::attention_torch_bf16.
void attention_torch_bf16(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
                          int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid);

// The attention kernels behind the two above (the table of the avx512 and amx levels; `generic`:
// the portable level's plain loops).
void attention_avx512(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
                      int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid);
void attention_generic(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,
                       int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid);
// amx: products on AMX tiles (needs cpu_has_amx_bf16()), else AVX-512 BF16 dot products.
void attention_torch_bf16_avx512(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq,
                                 int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal,
                                 const int64_t* key_valid, bool amx);
void attention_torch_bf16_generic(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq,
                                  int64_t Sk, int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal,
                                  const int64_t* key_valid);
// What the CPU has (cpu_level.h features()), whatever the active level.
bool cpu_has_avx512();
bool cpu_has_avx512_bf16();
// AMX-BF16 present and the OS grants this process the tile state (asked for once, by the probe).
bool cpu_has_amx_bf16();
// y[i] = exp(x[i]): the table's exp (the attention kernels' vectorised exp at avx512/amx, std::exp below).
void exp_f32(const float* x, float* y, int64_t n);
void exp_avx512(const float* x, float* y, int64_t n);

// 2-D convolution (cross-correlation as torch's Conv2d), see ops::conv2d. x [N, C, H, W] f32,
// w [O, C, kh, kw] of dtype `dt` (F32 or BF16: x is rounded to bf16), bias [O] f32 or null,
// y [N, O, OH, OW] f32.
struct ConvShape {
  int64_t N, C, H, W, O, kh, kw, sh, sw, pt, pb, pl, pr;
  int64_t out_h() const { return (H + pt + pb - kh) / sh + 1; }
  int64_t out_w() const { return (W + pl + pr - kw) / sw + 1; }
};
// How the oneDNN primitive sees memory, the backend's own choice (ops::conv2d does not name it; a
// CUDA or Metal backend has its own layouts): Plain: the primitive reads/writes NCHW directly.
// Blocked: oneDNN picks its layout and the source, weights and result are reordered around the
// primitive, the faster of the two (ConvBench.DISABLED_Conv512x512x128 in tests/backend).
enum class ConvLayout { Plain, Blocked };
void conv2d(const ConvShape& s, const void* x, const void* w, DType dt, const float* bias, float* y,
            ConvLayout layout = ConvLayout::Blocked);

}  // namespace zimage::cpu
