// Tensor devices (include/zimage/tensor.h, src/core/device.h): host access to a device tensor is
// an Error naming it; allocation without a backend is an Error naming the device; copies between
// the CPU and a device (here the host-memory fake of tests/util/fake_device.h) keep the bytes.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "util/fake_device.h"
#include "util/test_util.h"

namespace zimage {
namespace {

using test::error_of;

TEST(TensorDevice, CpuIsTheDefault) {
  EXPECT_EQ(Tensor::empty(DType::F32, {2, 3}).device(), Device::CPU);
  EXPECT_EQ(Tensor::empty(DType::F32, {2, 3}, Device::CPU).device(), Device::CPU);
  EXPECT_EQ(Tensor().device(), Device::CPU);
  EXPECT_STREQ(device_name(Device::CPU), "cpu");
  EXPECT_STREQ(device_name(Device::CUDA), "cuda");
  const Tensor t = Tensor::from_f32({2}, {1.f, 2.f});
  EXPECT_EQ(t.to(Device::CPU).raw(), t.raw());  // no copy
}

TEST(TensorDevice, HostAccessToADeviceTensorIsAnError) {
  std::vector<float> mem(6, 1.f);
  Tensor d = Tensor::from_storage(DType::F32, {2, 3}, Device::CUDA, mem.data(), nullptr);
  EXPECT_EQ(d.device(), Device::CUDA);
  EXPECT_TRUE(d.defined());
  const std::string want = "[tensor] host access to a cuda tensor [2, 3] (float32)";
  EXPECT_NE(error_of([&] { d.raw(); }).find(want), std::string::npos) << error_of([&] { d.raw(); });
  EXPECT_NE(error_of([&] { d.f32(); }).find(want), std::string::npos);
  EXPECT_NE(error_of([&] { d.data<float>(); }).find(want), std::string::npos);
  EXPECT_NE(error_of([&] { std::as_const(d).f32(); }).find(want), std::string::npos);
  EXPECT_NE(error_of([&] { d.to(DType::BF16); }).find(want), std::string::npos);
  // Views of a device tensor stay on the device.
  EXPECT_EQ(d.reshape({3, 2}).device(), Device::CUDA);
  EXPECT_EQ(d.slice0(1, 2).device(), Device::CUDA);
  EXPECT_NE(error_of([&] { d.slice0(1, 2).raw(); }).find("host access to a cuda tensor [1, 3]"), std::string::npos);
}

TEST(TensorDevice, WithoutABackendDeviceTensorsCannotBeMade) {
  test::NoDevice none;
  const std::string e = error_of([] { Tensor::empty(DType::F32, {4}, Device::CUDA); });
  EXPECT_NE(e.find("[tensor] allocating a tensor: no cuda backend in this process"), std::string::npos) << e;
  EXPECT_NE(error_of([] { Tensor::from_f32({1}, {1.f}).to(Device::CUDA); }).find("no cuda backend"), std::string::npos);
  std::vector<float> mem(1);
  Tensor d = Tensor::from_storage(DType::F32, {1}, Device::CUDA, mem.data(), nullptr);
  const std::string c = error_of([&] { d.copy_from(Tensor::from_f32({1}, {2.f})); });
  EXPECT_NE(c.find("[tensor] copy_from: no cuda backend"), std::string::npos) << c;
}

TEST(TensorDevice, CopiesToAndFromADevice) {
  test::FakeDevice fake;
  const Tensor h = Tensor::from_f32({2, 2}, {1.f, -2.f, 3.5f, 4.f});
  const int copies = test::FakeDevice::copies();
  const Tensor d = h.to(Device::CUDA);
  EXPECT_EQ(d.device(), Device::CUDA);
  EXPECT_EQ(d.shape(), h.shape());
  EXPECT_EQ(test::FakeDevice::copies(), copies + 1);
  EXPECT_EQ(d.to_vector(), h.to_vector());  // to_vector copies to the host first
  const Tensor c = d.clone();
  EXPECT_EQ(c.device(), Device::CUDA);
  EXPECT_NE(c.storage(), d.storage());
  const Tensor back = c.to(Device::CPU);
  EXPECT_EQ(back.device(), Device::CPU);
  EXPECT_EQ(back.to_vector(), h.to_vector());
  // copy_from into a row range of a device tensor.
  Tensor z = Tensor::zeros(DType::F32, {3, 2}, Device::CUDA);
  EXPECT_EQ(z.to_vector(), std::vector<float>(6, 0.f));
  z.slice0(1, 3).copy_from(h);
  EXPECT_EQ(z.to_vector(), (std::vector<float>{0.f, 0.f, 1.f, -2.f, 3.5f, 4.f}));
  const std::string e = error_of([&] { z.copy_from(h); });
  EXPECT_NE(e.find("[tensor] copy_from: float32 [2, 2] into float32 [3, 2]"), std::string::npos) << e;
  EXPECT_EQ(Tensor::empty(DType::BF16, {0, 4}, Device::CUDA).numel(), 0);
}

}  // namespace
}  // namespace zimage
