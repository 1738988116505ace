// A stand-in device for tests without a GPU: registers a backend for Device::CUDA whose "device
// memory" is host memory (so tests can look at it) and, optionally, an op table that forwards
// every op to the CPU op on aliases of the same memory. A tensor on it is a real Device::CUDA
// tensor for everything else: host access (raw, data, f32) is an Error, so code that runs on it
// without an Error reaches its data only through ops and copies, as it would on a GPU. The
// forwarding table also refuses CPU tensors mixed into a device op, as the CUDA table does.
// The guard restores the previous registration when it goes out of scope.
#pragma once
#include <cstdlib>
#include <cstring>

#include "core/device.h"

namespace zimage::test {

class FakeDevice {
 public:
  explicit FakeDevice(const ops::OpTable* ops = nullptr) : prev_(device_backend(Device::CUDA)) {
    backend_.name = "fake";
    backend_.allocate = [](size_t n) -> void* {
      ++allocations();
      return std::malloc(n);
    };
    backend_.release = [](void* p, size_t) { std::free(p); };
    backend_.copy = [](void* dst, Device, const void* src, Device, size_t n) {
      ++copies();
      std::memcpy(dst, src, n);
    };
    backend_.zero = [](void* p, size_t n) { std::memset(p, 0, n); };
    backend_.ops = ops;
    register_device_backend(Device::CUDA, &backend_);
  }
  ~FakeDevice() { register_device_backend(Device::CUDA, prev_); }
  FakeDevice(const FakeDevice&) = delete;
  FakeDevice& operator=(const FakeDevice&) = delete;

  static int& allocations() {
    static int n = 0;
    return n;
  }
  static int& copies() {
    static int n = 0;
    return n;
  }

 private:
  DeviceBackend backend_;
  const DeviceBackend* prev_;
};

// Temporarily no backend for Device::CUDA (as in a CPU-only build).
class NoDevice {
 public:
  NoDevice() : prev_(device_backend(Device::CUDA)) { register_device_backend(Device::CUDA, nullptr); }
  ~NoDevice() { register_device_backend(Device::CUDA, prev_); }

 private:
  const DeviceBackend* prev_;
};

}  // namespace zimage::test
