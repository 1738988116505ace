#include "backend/cuda/context.h"

#include "backend/cuda/cuda_check.h"

#include <mutex>

namespace zimage::cuda {

namespace {
constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLASLt: 32 MiB is ample on Hopper

Context* make_context() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();
    fail("[cuda] no usable CUDA device: ", e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
  }
  auto* c = new Context();
  ZI_CUDA_CHECK(cudaSetDevice(c->device));
  cudaDeviceProp prop{};
  ZI_CUDA_CHECK(cudaGetDeviceProperties(&prop, c->device));
  c->name = prop.name;
  c->sm_count = prop.multiProcessorCount;
  c->cc_major = prop.major;
  c->cc_minor = prop.minor;
  c->smem_optin = prop.sharedMemPerBlockOptin;
  if (c->cc_major < 8)
    fail("[cuda] device ", c->name, " has compute capability ", c->cc_major, ".", c->cc_minor,
         "; this backend needs 8.0 or newer (bf16 tensor cores)");
  ZI_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  ZI_CUBLAS_CHECK(cublasLtCreate(&c->lt));
  c->workspace_bytes = kWorkspaceBytes;
  if (cudaMalloc(&c->workspace, kWorkspaceBytes) != cudaSuccess) {
    cudaGetLastError();
    fail("[cuda] CUDA out of memory: asked for ", kWorkspaceBytes, " bytes for the cuBLASLt workspace");
  }
  return c;
}
}  // namespace

Context& ctx() {
  // Never destroyed (see allocator.cpp). A failed creation is retried on the next call.
  static Context* c = nullptr;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (!c) c = make_context();
  return *c;
}

bool available() {
  try {
    ctx();
    return true;
  } catch (const Error&) {
    return false;
  }
}

void synchronize() { ZI_CUDA_CHECK(cudaStreamSynchronize(ctx().stream)); }

}  // namespace zimage::cuda
