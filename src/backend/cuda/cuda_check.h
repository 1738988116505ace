// Error handling of the CUDA backend: every CUDA runtime and cuBLASLt call goes through one of
// these macros, which turn a failure into zimage::Error naming the call, the error and the place:
//   [cuda] cudaMemcpyAsync(...) failed: an illegal memory access was encountered (attention.cu:120)
// Kernel launches are followed by ZI_CUDA_CHECK_LAUNCH(), which reads cudaGetLastError() and, when
// the environment sets ZIMAGE_CUDA_SYNC=1, synchronises so that an asynchronous fault is reported
// at the launch that caused it (slow; for debugging on the device machine).
#pragma once
#include <cstddef>

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "core/error.h"

namespace zimage::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t s, const char* expr, const char* file, int line);
void check_launch(const char* what, const char* file, int line);
// True when ZIMAGE_CUDA_SYNC=1 (read once).
bool sync_after_launch();

}  // namespace zimage::cuda

#define ZI_CUDA_CHECK(expr)                                                                       \
  do {                                                                                            \
    const cudaError_t zi_e_ = (expr);                                                             \
    if (zi_e_ != cudaSuccess) ::zimage::cuda::throw_cuda_error(zi_e_, #expr, __FILE__, __LINE__); \
  } while (0)

#define ZI_CUBLAS_CHECK(expr)                                                                                 \
  do {                                                                                                        \
    const cublasStatus_t zi_s_ = (expr);                                                                      \
    if (zi_s_ != CUBLAS_STATUS_SUCCESS) ::zimage::cuda::throw_cublas_error(zi_s_, #expr, __FILE__, __LINE__); \
  } while (0)

#define ZI_CUDA_CHECK_LAUNCH(what) ::zimage::cuda::check_launch(what, __FILE__, __LINE__)
