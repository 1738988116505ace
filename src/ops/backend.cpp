#include "ops/backend.h"

namespace zimage::ops {

void missing_device_op(Device device, const char* op) {
  const DeviceBackend* b = device_backend(device);
  if (!b)
    fail("[ops] ", op, ": the tensor is on ", device_name(device), " but no ", device_name(device),
         " backend is in this process (build with -DZIMAGE_CUDA=ON and call zimage::cuda::register_backend())");
  fail("[ops] ", op, " is not implemented for ", device_name(device), " tensors (the ", b->name,
       " backend has no such op)");
}

}  // namespace zimage::ops
