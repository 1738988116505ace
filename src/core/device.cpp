#include "core/device.h"

#include <array>

namespace zimage {

namespace {
std::array<const DeviceBackend*, kDeviceCount>& registry() {
  static std::array<const DeviceBackend*, kDeviceCount> r{};
  return r;
}
}  // namespace

const char* device_name(Device d) {
  switch (d) {
    case Device::CPU:
      return "cpu";
    case Device::CUDA:
      return "cuda";
  }
  return "unknown";
}

void register_device_backend(Device device, const DeviceBackend* backend) {
  ZI_ASSERT(device != Device::CPU, "the CPU has no device backend to register");
  registry()[size_t(device)] = backend;
}

const DeviceBackend* device_backend(Device device) {
  return device == Device::CPU ? nullptr : registry()[size_t(device)];
}

const DeviceBackend& require_device_backend(Device device, const char* component, const char* what) {
  const DeviceBackend* b = device_backend(device);
  if (!b)
    fail("[", component, "] ", what, ": no ", device_name(device), " backend in this process (build with -DZIMAGE_",
         device == Device::CUDA ? "CUDA" : "?", "=ON and register it, e.g. zimage::cuda::register_backend())");
  return *b;
}

}  // namespace zimage
