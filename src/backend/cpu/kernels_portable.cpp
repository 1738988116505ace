// The plain kernels for the `portable` level, built for baseline x86-64 (CMakeLists.txt gives this
// file -march=x86-64): what runs on a CPU without AVX2, and the check of the vector kernels.
#define ZI_PLAIN_NS portable
#include "backend/cpu/gemm_rows.inc"
#include "backend/cpu/plain_kernels.inc"
#include "backend/cpu/row_kernels.inc"
