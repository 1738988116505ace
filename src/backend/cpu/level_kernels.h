// Declarations of the per-level kernels that cpu_level.cpp puts into the kernel tables
// (internal to src/backend/cpu). Each namespace is one level's build of the functions.
#pragma once
#include <cstdint>

#define ZI_PLAIN_KERNEL_DECLS                                                                                        \
  void attention_f32(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk,  \
                     int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid);        \
  void attention_bf16(const float* q, const float* k, const float* v, float* out, int64_t B, int64_t Sq, int64_t Sk, \
                      int64_t Hq, int64_t Hkv, int64_t D, float scale, bool causal, const int64_t* key_valid);       \
  void exp_f32(const float* x, float* y, int64_t n);                                                                 \
  void gemm_f32(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const float* w, const float* bias,     \
                float* y, int64_t ldy);

#define ZI_CL_KERNEL_DECLS                                                                                             \
  void cl_sums_f32(const float* x, int64_t C, const float* shift, int64_t p0, int64_t p1, double* s1, double* s2);     \
  void cl_sums_bf16(const uint16_t* x, int64_t C, const float* shift, int64_t p0, int64_t p1, double* s1, double* s2); \
  void cl_apply_f32(const float* x, float* y, int64_t C, const float* a, const float* sh, int64_t p0, int64_t p1,      \
                    bool silu);                                                                                        \
  void cl_apply_bf16(const uint16_t* x, uint16_t* y, int64_t C, const float* a, const float* sh, int64_t p0,           \
                     int64_t p1, bool silu);                                                                           \
  void add_bf16(uint16_t* y, const uint16_t* x, int64_t n);

#define ZI_ROW_KERNEL_DECLS                                                                                  \
  void modulate_row_bf16(const float* x, int64_t n, float inv, const float* w, const float* s, uint16_t* o); \
  void gate_add_row_bf16(const float* y, int64_t n, float inv, const float* w, const float* g, float* x);    \
  void silu_mul_row_bf16(const float* a, const float* b, const float* e, float* y, int64_t n);               \
  void round_row_bf16(const float* x, float* y, int64_t n);

namespace zimage::cpu {
namespace portable {  // kernels_portable.cpp (plain_kernels.inc, gemm_rows.inc for baseline x86-64)
ZI_PLAIN_KERNEL_DECLS
ZI_CL_KERNEL_DECLS
ZI_ROW_KERNEL_DECLS
}  // namespace portable
namespace avx2 {  // kernels_avx2.cpp (plain_kernels.inc, gemm_rows.inc for AVX2 + FMA)
ZI_PLAIN_KERNEL_DECLS
ZI_CL_KERNEL_DECLS
ZI_ROW_KERNEL_DECLS
}  // namespace avx2
namespace avx512 {  // channels_last_avx512.cpp, kernels_avx512.cpp; attention: attention_{f32,bf16}_avx512.cpp
                    // (kernels.h)
ZI_CL_KERNEL_DECLS
ZI_ROW_KERNEL_DECLS
}  // namespace avx512
}  // namespace zimage::cpu

#undef ZI_PLAIN_KERNEL_DECLS
#undef ZI_CL_KERNEL_DECLS
#undef ZI_ROW_KERNEL_DECLS
