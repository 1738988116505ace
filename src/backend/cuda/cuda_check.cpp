#include "backend/cuda/cuda_check.h"

#include <cstdlib>
#include <cstring>

namespace zimage::cuda {

namespace {
const char* base_name(const char* file) {
  const char* s = std::strrchr(file, '/');
  return s ? s + 1 : file;
}
}  // namespace

void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so later calls are not blamed for it
  fail("[cuda] ", expr, " failed: ", cudaGetErrorName(e), ": ", cudaGetErrorString(e), " (", base_name(file), ":", line,
       ")");
}

void throw_cublas_error(cublasStatus_t s, const char* expr, const char* file, int line) {
  fail("[cuda] ", expr, " failed: cuBLAS status ", int(s), " ", cublasLtGetStatusName(s), ": ",
       cublasLtGetStatusString(s), " (", base_name(file), ":", line, ")");
}

bool sync_after_launch() {
  static const bool on = [] {
    const char* v = std::getenv("ZIMAGE_CUDA_SYNC");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

void check_launch(const char* what, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess && sync_after_launch()) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) throw_cuda_error(e, what, file, line);
}

}  // namespace zimage::cuda
