// DeviceTensor: dtype + shape + device memory from the caching allocator, row-major contiguous,
// like zimage::Tensor. Views (reshape, slice0) share the block. Host <-> device copies convert
// between dtypes on the host with core/dtype.h's bit-exact round-to-nearest-even conversions.
#pragma once
#include <memory>

#include "core/tensor.h"

namespace zimage::cuda {

class DeviceTensor {
 public:
  DeviceTensor() = default;

  // Uninitialised. `component` names the owner in an out-of-memory error.
  static DeviceTensor empty(DType dt, Shape shape, const char* component = "cuda");
  static DeviceTensor zeros(DType dt, Shape shape, const char* component = "cuda");
  // Copies `t` to the device as dtype `as` (converted on the host). Waits for the copy.
  static DeviceTensor upload(const Tensor& t, DType as, const char* component = "cuda");
  static DeviceTensor upload(const Tensor& t, const char* component = "cuda") {
    return upload(t, t.dtype(), component);
  }
  // Copies to a new host tensor of dtype `as`. Waits for all queued work on the stream.
  Tensor download(DType as = DType::F32) const;
  // The same memory seen as the other type (no copy): a zimage::Tensor on Device::CUDA (what the
  // op table takes and returns) and back. `owner` keeps the memory alive.
  static DeviceTensor wrap(DType dt, Shape shape, void* data, std::shared_ptr<const void> owner);
  static DeviceTensor of(const Tensor& t);  // t must be a CUDA tensor (or undefined)
  Tensor tensor() const;                    // Device::CUDA

  bool defined() const { return ptr_ != nullptr || numel() == 0; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const;  // negative counts from the end
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape_) n *= d;
    return n;
  }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  void* data() { return ptr_; }
  const void* data() const { return ptr_; }

  DeviceTensor reshape(Shape s) const;                    // same storage, same element count
  DeviceTensor slice0(int64_t begin, int64_t end) const;  // rows [begin, end) of dim 0

 private:
  DType dtype_ = DType::F32;
  Shape shape_;
  std::shared_ptr<const void> owner_;
  void* ptr_ = nullptr;
};

}  // namespace zimage::cuda
