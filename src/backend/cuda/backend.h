// The CUDA backend behind the op interface: register_backend() makes Device::CUDA tensors
// allocatable (Tensor::empty(..., Device::CUDA), Tensor::to(Device::CUDA)) and routes the ops of
// src/ops/ops.h that the Z-Image transformer calls to this folder's kernels (op_table.cpp), so
// the transformer's model code runs unchanged on device tensors. Ops the table lacks (conv2d,
// group_norm, ...: the VAE; the quantized GEMM) are errors naming the op on cuda tensors.
#pragma once

namespace zimage::cuda {

// Registers the backend for Device::CUDA (idempotent, thread-safe). Does not touch the GPU: the
// first allocation does, and reports a missing device or driver as zimage::Error.
void register_backend();

}  // namespace zimage::cuda
