// The plain kernels for the `avx2` level: the same loops as kernels_portable.cpp, vectorised by
// the compiler for AVX2 + FMA (CMakeLists.txt gives this file -march=x86-64-v3).
#define ZI_PLAIN_NS avx2
#include "backend/cpu/gemm_rows.inc"
#include "backend/cpu/plain_kernels.inc"
#include "backend/cpu/row_kernels.inc"
