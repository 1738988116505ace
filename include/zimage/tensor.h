// Tensor: dtype + shape + shared storage, always row-major contiguous. Storage either owns
// 64-byte-aligned memory or views memory owned elsewhere (a memory-mapped safetensors file).
// Storage lives on a device: the CPU (the default) or an accelerator whose backend allocated it
// (src/backend/<name>, registered in src/core/device.h). Host access (raw, data, f32, to(DType),
// clone's memcpy) to a non-CPU tensor is an error naming the tensor's device; such a tensor is
// read only by its backend's ops, or copied (to(Device), copy_from, to_vector).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "zimage/dtype.h"
#include "zimage/error.h"

namespace zimage {

using Shape = std::vector<int64_t>;

enum class Device : uint8_t { CPU, CUDA };
const char* device_name(Device d);  // "cpu", "cuda"
constexpr int kDeviceCount = 2;
std::string shape_str(const Shape& s);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);    // throws on negative dims or overflow

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(DType dt, Shape shape);  // uninitialised, owned
  static Tensor zeros(DType dt, Shape shape);
  static Tensor from_f32(Shape shape, const std::vector<float>& values);
  // Non-owning view of `data`; `keepalive` keeps the owner (e.g. a file mapping) alive.
  static Tensor view(DType dt, Shape shape, const void* data, std::shared_ptr<const void> keepalive);
  // On a device: allocated by that device's backend (an error naming the device when this build or
  // process has none). Device::CPU is the same as the overloads above.
  static Tensor empty(DType dt, Shape shape, Device device);
  static Tensor zeros(DType dt, Shape shape, Device device);
  // Writable tensor over `data` on `device`, kept alive by `owner` (backends wrap their results).
  static Tensor from_storage(DType dt, Shape shape, Device device, void* data, std::shared_ptr<const void> owner);

  bool defined() const { return data_ != nullptr || numel() == 0; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const;  // negative counts from the end
  int64_t numel() const { return shape_numel_unchecked(); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  bool read_only() const { return read_only_; }
  Device device() const { return device_; }
  bool is_cpu() const { return device_ == Device::CPU; }

  // Views of a file mapping are copy-on-write private mappings: writing through them never
  // changes the file, but model code treats them as read-only.
  // Host pointers: CPU tensors only (one device check per call, none per element).
  void* raw() {
    check_host();
    return data_;
  }
  const void* raw() const {
    check_host();
    return data_;
  }
  template <class T>
  T* data() {
    check_type(sizeof(T));
    return static_cast<T*>(raw());
  }
  template <class T>
  const T* data() const {
    check_type(sizeof(T));
    return static_cast<const T*>(raw());
  }
  float* f32() {
    ZI_ASSERT(dtype_ == DType::F32, "tensor is ", dtype_name(dtype_), ", not float32");
    return static_cast<float*>(raw());
  }
  const float* f32() const {
    ZI_ASSERT(dtype_ == DType::F32, "tensor is ", dtype_name(dtype_), ", not float32");
    return static_cast<const float*>(raw());
  }
  // The storage address on whatever device it is (for backends; model code uses the above).
  void* storage() const { return data_; }
  const std::shared_ptr<const void>& storage_owner() const { return owner_; }

  // Same storage, new shape (element count must match).
  Tensor reshape(Shape s) const;
  // Rows [begin, end) along dimension 0, sharing storage.
  Tensor slice0(int64_t begin, int64_t end) const;
  // Converted copy; returns *this (shared) when the dtype already matches. Host only.
  Tensor to(DType dt) const;
  // Copy on `device` (same dtype); returns *this (shared) when it is there already.
  Tensor to(Device device) const;
  Tensor clone() const;  // same device
  // Copies src's bytes into this tensor: same dtype and element count, any pair of devices.
  void copy_from(const Tensor& src);
  // Float values as a vector (any dtype, any device: copied to the host first), for tests and
  // diagnostics.
  std::vector<float> to_vector() const;

 private:
  void check_host() const {
    if (device_ != Device::CPU) [[unlikely]]
      host_access_error();
  }
  [[noreturn]] void host_access_error() const;
  void check_type(size_t sz) const {
    ZI_ASSERT(sz == dtype_size(dtype_), "element size ", sz, " does not match ", dtype_name(dtype_));
  }
  int64_t shape_numel_unchecked() const {
    int64_t n = 1;
    for (auto d : shape_) n *= d;
    return n;
  }
  DType dtype_ = DType::F32;
  Shape shape_;
  std::shared_ptr<const void> owner_;
  void* data_ = nullptr;
  bool read_only_ = false;
  Device device_ = Device::CPU;
};

// Relative L2 error ||a-b|| / ||b|| computed in double (b is the reference).
double rel_l2(const Tensor& a, const Tensor& b);
double rel_l2(const float* a, const float* b, size_t n);

// Bytes held by tensors allocated with Tensor::empty (activations, converted weights; not mmapped
// weights or libraries' scratch): now, and the high-water mark since the last reset.
int64_t tensor_bytes_live();
int64_t tensor_bytes_peak();
void reset_tensor_bytes_peak();

}  // namespace zimage
