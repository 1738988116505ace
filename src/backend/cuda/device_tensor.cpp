#include "backend/cuda/device_tensor.h"

#include <vector>

#include "backend/cuda/allocator.h"
#include "backend/cuda/context.h"
#include "backend/cuda/cuda_check.h"

namespace zimage::cuda {

DeviceTensor DeviceTensor::empty(DType dt, Shape shape, const char* component) {
  DeviceTensor t;
  t.dtype_ = dt;
  t.shape_ = std::move(shape);
  shape_numel(t.shape_);  // validates (negative dims, overflow)
  const size_t bytes = t.nbytes();
  if (bytes == 0) return t;
  ctx();  // the device must exist before the first allocation
  void* p = CachingAllocator::instance().allocate(bytes, component);
  t.owner_ = std::shared_ptr<void>(p, [bytes](void* q) { CachingAllocator::instance().release(q, bytes); });
  t.ptr_ = p;
  return t;
}

DeviceTensor DeviceTensor::wrap(DType dt, Shape shape, void* data, std::shared_ptr<const void> owner) {
  DeviceTensor t;
  t.dtype_ = dt;
  shape_numel(shape);
  t.shape_ = std::move(shape);
  t.ptr_ = data;
  t.owner_ = std::move(owner);
  return t;
}

DeviceTensor DeviceTensor::of(const Tensor& t) {
  if (t.defined() && t.numel() > 0 && t.device() != Device::CUDA)
    fail("[cuda] expected a cuda tensor, got a ", device_name(t.device()), " tensor ", shape_str(t.shape()));
  if (!t.defined()) return DeviceTensor();
  return wrap(t.dtype(), t.shape(), t.storage(), t.storage_owner());
}

Tensor DeviceTensor::tensor() const { return Tensor::from_storage(dtype_, shape_, Device::CUDA, ptr_, owner_); }

DeviceTensor DeviceTensor::zeros(DType dt, Shape shape, const char* component) {
  DeviceTensor t = empty(dt, std::move(shape), component);
  if (t.nbytes()) ZI_CUDA_CHECK(cudaMemsetAsync(t.ptr_, 0, t.nbytes(), ctx().stream));
  return t;
}

DeviceTensor DeviceTensor::upload(const Tensor& t, DType as, const char* component) {
  DeviceTensor d = empty(as, t.shape(), component);
  if (d.nbytes() == 0) return d;
  const void* src = t.raw();
  std::vector<unsigned char> tmp;
  if (t.dtype() != as) {
    tmp.resize(d.nbytes());
    convert(t.raw(), t.dtype(), tmp.data(), as, size_t(t.numel()));
    src = tmp.data();
  }
  auto& c = ctx();
  ZI_CUDA_CHECK(cudaMemcpyAsync(d.ptr_, src, d.nbytes(), cudaMemcpyHostToDevice, c.stream));
  ZI_CUDA_CHECK(cudaStreamSynchronize(c.stream));  // `tmp` / pageable `t` must outlive the copy
  return d;
}

Tensor DeviceTensor::download(DType as) const {
  Tensor raw = Tensor::empty(dtype_, shape_);
  if (nbytes()) {
    auto& c = ctx();
    ZI_CUDA_CHECK(cudaMemcpyAsync(raw.raw(), ptr_, nbytes(), cudaMemcpyDeviceToHost, c.stream));
    ZI_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  }
  return raw.to(as);
}

int64_t DeviceTensor::dim(int i) const {
  const int n = ndim();
  const int j = i < 0 ? i + n : i;
  if (j < 0 || j >= n) fail("[cuda] dim ", i, " out of range for shape ", shape_str(shape_));
  return shape_[size_t(j)];
}

DeviceTensor DeviceTensor::reshape(Shape s) const {
  if (shape_numel(s) != numel()) fail("[cuda] cannot reshape ", shape_str(shape_), " to ", shape_str(s));
  DeviceTensor t = *this;
  t.shape_ = std::move(s);
  return t;
}

DeviceTensor DeviceTensor::slice0(int64_t begin, int64_t end) const {
  if (ndim() == 0 || begin < 0 || end < begin || end > shape_[0])
    fail("[cuda] slice [", begin, ", ", end, ") out of range for shape ", shape_str(shape_));
  DeviceTensor t = *this;
  const int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  t.shape_[0] = end - begin;
  if (ptr_) t.ptr_ = static_cast<unsigned char*>(ptr_) + size_t(begin * row) * dtype_size(dtype_);
  return t;
}

}  // namespace zimage::cuda
