// Op dispatch by device (src/ops/backend.h): a CPU tensor runs the CPU op and never the device
// table; a device tensor runs its device's table entry; a missing entry, a missing backend and a
// device tensor handed to a CPU op are Errors naming the op / tensor. The device is the
// host-memory fake of tests/util/fake_device.h with the forwarding table, so results can be
// compared bit for bit with the CPU op.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "ops/backend.h"
#include "ops/ops.h"
#include "util/fake_device_ops.h"
#include "util/test_util.h"

namespace zimage {
namespace {

using test::error_of;

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.to(Device::CPU), hb = b.to(Device::CPU);
  return ha.dtype() == hb.dtype() && ha.shape() == hb.shape() && std::memcmp(ha.raw(), hb.raw(), ha.nbytes()) == 0;
}

TEST(DeviceDispatch, CpuTensorsRunTheCpuOp) {
  const ops::OpTable table = test::ForwardingOps::table();
  test::FakeDevice fake(&table);
  const Tensor x = test::randn({5, 8}, 1), w = test::randn({3, 8}, 2);
  const int calls = test::ForwardingOps::calls();
  const Tensor y = ops::linear(x, w);
  Tensor r = test::randn({4, 8}, 3);
  ops::round_to_bf16_(r);
  ops::rms_norm_as(x, Tensor(), 1e-5f, DType::BF16);
  EXPECT_EQ(test::ForwardingOps::calls(), calls);  // the device table was not consulted
  EXPECT_EQ(y.device(), Device::CPU);
  EXPECT_LE(rel_l2(y, ops::ref::linear(x, w)), 1e-5);
}

TEST(DeviceDispatch, DeviceTensorsRunTheDeviceTable) {
  const ops::OpTable table = test::ForwardingOps::table();
  test::FakeDevice fake(&table);
  const Tensor x = test::randn({5, 8}, 1), w = test::randn({3, 8}, 2), b = test::randn({3}, 4);
  const Tensor dx = x.to(Device::CUDA), dw = w.to(Device::CUDA), db = b.to(Device::CUDA);
  const int calls = test::ForwardingOps::calls();
  const Tensor y = ops::linear(dx, dw, &db);
  EXPECT_EQ(test::ForwardingOps::calls(), calls + 1);
  EXPECT_EQ(y.device(), Device::CUDA);
  EXPECT_TRUE(same_bytes(y, ops::linear(x, w, &b)));

  const auto c = ops::adaln_chunks(test::randn({2, 32}, 5).to(Device::CUDA), DType::BF16);
  const auto want = ops::adaln_chunks(test::randn({2, 32}, 5), DType::BF16);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(c[size_t(i)].device(), Device::CUDA);
    EXPECT_TRUE(same_bytes(c[size_t(i)], want[size_t(i)])) << i;
  }
  // In-place ops write the device tensor.
  Tensor r = x.to(Device::CUDA);
  ops::round_to_bf16_(r);
  Tensor hr = x.clone();
  ops::round_to_bf16_(hr);
  EXPECT_TRUE(same_bytes(r, hr));
  // A CPU tensor mixed into a device op is refused by the backend.
  const std::string e = error_of([&] { ops::linear(dx, w); });
  EXPECT_NE(e.find("[fake] a cpu tensor [3, 8] was passed to a device op"), std::string::npos) << e;
}

TEST(DeviceDispatch, MissingOpsAndBackendsAreErrors) {
  const Tensor x = test::randn({2, 4}, 1);
  {
    ops::OpTable empty;  // a backend with memory but without these ops
    test::FakeDevice fake(&empty);
    const Tensor d = x.to(Device::CUDA);
    const std::string e = error_of([&] { ops::rms_norm(d, Tensor(), 1e-6f); });
    EXPECT_NE(e.find("[ops] rms_norm is not implemented for cuda tensors (the fake backend has no such op)"),
              std::string::npos)
        << e;
  }
  {
    test::NoDevice none;  // a CPU-only build
    std::vector<float> mem(8);
    Tensor d = Tensor::from_storage(DType::F32, {2, 4}, Device::CUDA, mem.data(), nullptr);
    const std::string e = error_of([&] { ops::silu_(d); });
    EXPECT_NE(e.find("[ops] silu_: the tensor is on cuda but no cuda backend is in this process"), std::string::npos)
        << e;
  }
  {
    // A CPU op (x on the CPU) handed a device weight fails at its first host access.
    test::FakeDevice fake;
    const Tensor w = test::randn({3, 4}, 2).to(Device::CUDA);
    const std::string e = error_of([&] { ops::linear(x, w); });
    EXPECT_NE(e.find("[tensor] host access to a cuda tensor [3, 4] (float32)"), std::string::npos) << e;
  }
}

}  // namespace
}  // namespace zimage
