// Per-process CUDA state of the backend: device 0, one non-blocking stream on which every kernel,
// copy and GEMM of this backend runs, the cuBLASLt handle and its workspace, device properties.
// Created on first use (which is when a missing GPU or driver is reported as zimage::Error).
#pragma once
#include <cstddef>
#include <string>

#include <cublasLt.h>
#include <cuda_runtime.h>

namespace zimage::cuda {

struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;  // cuBLASLt workspace
  size_t workspace_bytes = 0;
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
  size_t smem_optin = 0;  // largest dynamic shared memory a block may opt into
  std::string name;
};

// The context (created on first call; throws zimage::Error when no CUDA device is usable).
Context& ctx();
// True when a CUDA device is present and usable (never throws). Tests use it to skip.
bool available();
// Waits for all work on the backend's stream.
void synchronize();

}  // namespace zimage::cuda
