// The element loops of row_kernels.inc for the `avx512` and `amx` levels: the same loops as the
// portable and avx2 builds, vectorised by the compiler for AVX-512 (16 floats a register).
#if !defined(__clang__)  // GCC only: clang takes the ISA from CMakeLists.txt
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")
#endif
#define ZI_PLAIN_NS avx512
#include "backend/cpu/row_kernels.inc"
#if !defined(__clang__)
#pragma GCC pop_options
#endif
