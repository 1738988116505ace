#include "core/tensor.h"

#include "core/device.h"

#include <atomic>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>

namespace zimage {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) {
    if (d < 0) fail("tensor: negative dimension in shape ", shape_str(s));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      fail("tensor: shape ", shape_str(s), " has too many elements");
    n *= d;
  }
  return n;
}

namespace {
std::atomic<int64_t> g_live_bytes{0}, g_peak_bytes{0};
}  // namespace

int64_t tensor_bytes_live() { return g_live_bytes.load(std::memory_order_relaxed); }
int64_t tensor_bytes_peak() { return g_peak_bytes.load(std::memory_order_relaxed); }
void reset_tensor_bytes_peak() {
  g_peak_bytes.store(g_live_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

Tensor Tensor::empty(DType dt, Shape shape) {
  int64_t n = shape_numel(shape);
  if (uint64_t(n) > (uint64_t(1) << 40) / dtype_size(dt))
    fail("tensor: refusing to allocate ", shape_str(shape), " (", dtype_name(dt), "): too large");
  Tensor t;
  t.dtype_ = dt;
  t.shape_ = std::move(shape);
  size_t bytes = size_t(n) * dtype_size(dt);
  size_t alloc = (bytes + 63) / 64 * 64;
  if (alloc == 0) alloc = 64;
  void* p = std::aligned_alloc(64, alloc);
  if (!p) fail("tensor: out of memory allocating ", bytes, " bytes for ", shape_str(t.shape_));
  const int64_t now = g_live_bytes.fetch_add(int64_t(alloc), std::memory_order_relaxed) + int64_t(alloc);
  int64_t peak = g_peak_bytes.load(std::memory_order_relaxed);
  while (now > peak && !g_peak_bytes.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {}
  t.owner_ = std::shared_ptr<void>(p, [alloc](void* q) {
    g_live_bytes.fetch_sub(int64_t(alloc), std::memory_order_relaxed);
    std::free(q);
  });
  t.data_ = p;
  return t;
}

Tensor Tensor::empty(DType dt, Shape shape, Device device) {
  if (device == Device::CPU) return empty(dt, std::move(shape));
  const DeviceBackend& be = require_device_backend(device, "tensor", "allocating a tensor");
  const int64_t n = shape_numel(shape);
  if (uint64_t(n) > (uint64_t(1) << 40) / dtype_size(dt))
    fail("[tensor] refusing to allocate ", shape_str(shape), " (", dtype_name(dt), ") on ", device_name(device),
         ": too large");
  Tensor t;
  t.dtype_ = dt;
  t.shape_ = std::move(shape);
  t.device_ = device;
  const size_t bytes = size_t(n) * dtype_size(dt);
  if (bytes == 0) return t;  // defined() holds for numel() == 0
  void* p = be.allocate(bytes);
  auto release = be.release;
  t.owner_ = std::shared_ptr<void>(p, [release, bytes](void* q) { release(q, bytes); });
  t.data_ = p;
  return t;
}

Tensor Tensor::zeros(DType dt, Shape shape, Device device) {
  if (device == Device::CPU) return zeros(dt, std::move(shape));
  Tensor t = empty(dt, std::move(shape), device);
  if (t.nbytes()) device_backend(device)->zero(t.data_, t.nbytes());
  return t;
}

Tensor Tensor::from_storage(DType dt, Shape shape, Device device, void* data, std::shared_ptr<const void> owner) {
  Tensor t;
  t.dtype_ = dt;
  shape_numel(shape);
  t.shape_ = std::move(shape);
  t.device_ = device;
  t.owner_ = std::move(owner);
  t.data_ = data;
  return t;
}

void Tensor::host_access_error() const {
  fail("[tensor] host access to a ", device_name(device_), " tensor ", shape_str(shape_), " (", dtype_name(dtype_),
       "): copy it to the CPU first (to(Device::CPU)) or use an op");
}

Tensor Tensor::to(Device device) const {
  if (device == device_) return *this;
  Tensor t = empty(dtype_, shape_, device);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  if (src.dtype_ != dtype_ || src.numel() != numel())
    fail("[tensor] copy_from: ", dtype_name(src.dtype_), " ", shape_str(src.shape_), " into ", dtype_name(dtype_), " ",
         shape_str(shape_), " (dtype and element count must match)");
  if (read_only_) fail("[tensor] copy_from: the destination ", shape_str(shape_), " is read-only");
  const size_t n = nbytes();
  if (n == 0 || data_ == src.data_) return;
  if (device_ == Device::CPU && src.device_ == Device::CPU) {
    std::memcpy(data_, src.data_, n);
    return;
  }
  const Device d = device_ != Device::CPU ? device_ : src.device_;
  if (device_ != Device::CPU && src.device_ != Device::CPU && device_ != src.device_)
    fail("[tensor] copy_from: ", device_name(src.device_), " to ", device_name(device_),
         " needs a copy through the CPU");
  require_device_backend(d, "tensor", "copy_from").copy(data_, device_, src.data_, src.device_, n);
}

Tensor Tensor::zeros(DType dt, Shape shape) {
  Tensor t = empty(dt, std::move(shape));
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::from_f32(Shape shape, const std::vector<float>& values) {
  Tensor t = empty(DType::F32, std::move(shape));
  ZI_ASSERT(size_t(t.numel()) == values.size(), "from_f32: ", values.size(), " values for ", shape_str(t.shape_));
  std::memcpy(t.data_, values.data(), t.nbytes());
  return t;
}

Tensor Tensor::view(DType dt, Shape shape, const void* data, std::shared_ptr<const void> keepalive) {
  Tensor t;
  t.dtype_ = dt;
  shape_numel(shape);
  t.shape_ = std::move(shape);
  t.owner_ = std::move(keepalive);
  t.data_ = const_cast<void*>(data);
  t.read_only_ = true;
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  int j = i < 0 ? i + n : i;
  ZI_ASSERT(j >= 0 && j < n, "dim ", i, " out of range for shape ", shape_str(shape_));
  return shape_[size_t(j)];
}

Tensor Tensor::reshape(Shape s) const {
  ZI_ASSERT(shape_numel(s) == numel(), "reshape ", shape_str(shape_), " -> ", shape_str(s));
  Tensor t = *this;
  t.shape_ = std::move(s);
  return t;
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  ZI_ASSERT(ndim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0], "slice0 [", begin, ", ", end, ") of ",
            shape_str(shape_));
  Tensor t = *this;
  int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  t.shape_[0] = end - begin;
  t.data_ = static_cast<char*>(data_) + size_t(begin * row) * dtype_size(dtype_);
  return t;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype_) return *this;
  check_host();
  Tensor t = empty(dt, shape_);
  convert(data_, dtype_, t.data_, dt, size_t(numel()));
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(dtype_, shape_, device_);
  t.copy_from(*this);
  return t;
}

std::vector<float> Tensor::to_vector() const {
  if (device_ != Device::CPU) return to(Device::CPU).to_vector();
  std::vector<float> v(static_cast<size_t>(numel()));
  convert(data_, dtype_, v.data(), DType::F32, v.size());
  return v;
}

double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  if (den == 0) return std::sqrt(num);
  return std::sqrt(num / den);
}

double rel_l2(const Tensor& a, const Tensor& b) {
  ZI_ASSERT(a.numel() == b.numel(), "rel_l2: ", shape_str(a.shape()), " vs ", shape_str(b.shape()));
  auto va = a.to_vector(), vb = b.to_vector();
  return rel_l2(va.data(), vb.data(), va.size());
}

}  // namespace zimage
