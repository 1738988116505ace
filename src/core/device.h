// Device backends: how core reaches memory that is not the CPU's. A backend (src/backend/<name>)
// registers one DeviceBackend per device at start-up: memory (allocate, release, copy, zero) for
// Tensor, and its op table (src/ops/backend.h) for the ops layer, which dispatches every op on
// the device of its first tensor argument. The CPU needs no entry: it is the default path of
// every op. A Metal or Vulkan backend would be one more Device value, one more folder and one
// more registration; model code does not change.
#pragma once
#include <cstddef>

#include "core/tensor.h"

namespace zimage::ops {
struct OpTable;
}

namespace zimage {

struct DeviceBackend {
  const char* name = "";  // "cuda"
  // Device memory of at least `bytes`; throws zimage::Error (naming the bytes) when out of memory.
  void* (*allocate)(size_t bytes) = nullptr;
  void (*release)(void* p, size_t bytes) = nullptr;  // p from allocate(bytes)
  // Copies n bytes between this device and the host or within this device; returns when the
  // bytes can be read at dst (and src may be reused).
  void (*copy)(void* dst, Device dst_device, const void* src, Device src_device, size_t n) = nullptr;
  void (*zero)(void* p, size_t n) = nullptr;
  const ops::OpTable* ops = nullptr;  // null: no ops (memory only)
};

// Registers (or, with nullptr, removes) the backend of `device` (not Device::CPU). Not thread-safe
// against concurrent ops: call it at start-up.
void register_device_backend(Device device, const DeviceBackend* backend);
// The registered backend, or nullptr.
const DeviceBackend* device_backend(Device device);
// The registered backend; throws "[<component>] <what>: no <device> backend ..." when there is none.
const DeviceBackend& require_device_backend(Device device, const char* component, const char* what);

}  // namespace zimage
