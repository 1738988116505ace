// Elementwise kernels: dtype conversion, tanh-gated residual add, SwiGLU.
#include "backend/cuda/common.cuh"
#include "backend/cuda/context.h"

namespace zimage::cuda {

ItemRows make_item_rows(const char* op, const std::vector<int64_t>& rows, int64_t total, int64_t items) {
  ItemRows r;
  if (rows.empty()) {  // one item owning every row
    if (items != 1) fail("[", op, "] no row counts given for ", items, " items");
    r.n = 1;
    r.end[0] = total;
    return r;
  }
  if (int64_t(rows.size()) != items) fail("[", op, "] ", rows.size(), " row counts for ", items, " items");
  if (rows.size() > size_t(kMaxItems))
    fail("[", op, "] ", rows.size(), " items; the CUDA backend takes at most ", kMaxItems);
  int64_t acc = 0;
  for (size_t b = 0; b < rows.size(); ++b) {
    if (rows[b] < 0) fail("[", op, "] negative row count ", rows[b]);
    acc += rows[b];
    r.end[b] = acc;
  }
  if (acc != total) fail("[", op, "] row counts sum to ", acc, " but x has ", total, " rows");
  r.n = int(rows.size());
  return r;
}

void check_float_dtype(const char* op, const DeviceTensor& t, const char* name) {
  if (!t.defined() || (t.numel() > 0 && t.data() == nullptr)) fail("[", op, "] ", name, " is undefined");
}

namespace {

__global__ void convert_kernel(const void* x, DType xt, void* y, DType yt, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store_f(y, yt, i, load_f(x, xt, i));
}

// x[r, i] += tanh(gate[item(r), i]) * y[r, i]   (no gate: x += y)
__global__ void gate_add_kernel(void* x, DType xt, const void* gate, DType gt, const void* y, DType yt, int64_t T,
                                int64_t N, ItemRows items) {
  const int64_t n = T * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / N, c = i % N;
    float d = load_f(y, yt, i);
    if (gate) d *= tanhf(load_f(gate, gt, int64_t(items.item_of(r)) * N + c));
    store_f(x, xt, i, load_f(x, xt, i) + d);
  }
}

// y = silu(a) * b = a / (1 + exp(-a)) * b
__global__ void silu_mul_kernel(const void* a, DType at, const void* b, DType bt, void* y, DType yt, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float av = load_f(a, at, i);
    store_f(y, yt, i, av / (1.f + expf(-av)) * load_f(b, bt, i));
  }
}

constexpr int kThreads = 256;
unsigned blocks_for(int64_t n) {
  const unsigned cap = unsigned(ctx().sm_count) * 16u;  // grid-stride loops cover the rest
  const unsigned g = grid_for(n, kThreads);
  return g < cap ? g : cap;
}

}  // namespace

DeviceTensor convert(const DeviceTensor& x, DType to) {
  DeviceTensor y = DeviceTensor::empty(to, x.shape());
  if (x.numel() == 0) return y;
  convert_kernel<<<blocks_for(x.numel()), kThreads, 0, ctx().stream>>>(x.data(), x.dtype(), y.data(), to, x.numel());
  ZI_CUDA_CHECK_LAUNCH("convert_kernel");
  return y;
}

void gate_add_(DeviceTensor& x, const DeviceTensor* gate, const DeviceTensor& y, const std::vector<int64_t>& rows) {
  if (x.ndim() != 2 || y.shape() != x.shape())
    fail("[gate_add] x ", shape_str(x.shape()), " and y ", shape_str(y.shape()), " disagree");
  const int64_t T = x.dim(0), N = x.dim(1);
  if (gate && (gate->ndim() != 2 || gate->dim(1) != N))
    fail("[gate_add] gate ", shape_str(gate->shape()), " does not match x ", shape_str(x.shape()));
  const ItemRows items =
      make_item_rows("gate_add", rows, T, gate ? gate->dim(0) : int64_t(rows.empty() ? 1 : rows.size()));
  if (x.numel() == 0) return;
  gate_add_kernel<<<blocks_for(x.numel()), kThreads, 0, ctx().stream>>>(
      x.data(), x.dtype(), gate ? gate->data() : nullptr, gate ? gate->dtype() : DType::F32, y.data(), y.dtype(), T, N,
      items);
  ZI_CUDA_CHECK_LAUNCH("gate_add_kernel");
}

DeviceTensor silu_mul(const DeviceTensor& a, const DeviceTensor& b) {
  if (a.shape() != b.shape())
    fail("[silu_mul] shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " differ");
  DeviceTensor y = DeviceTensor::empty(a.dtype(), a.shape());
  if (a.numel() == 0) return y;
  silu_mul_kernel<<<blocks_for(a.numel()), kThreads, 0, ctx().stream>>>(a.data(), a.dtype(), b.data(), b.dtype(),
                                                                        y.data(), y.dtype(), a.numel());
  ZI_CUDA_CHECK_LAUNCH("silu_mul_kernel");
  return y;
}

}  // namespace zimage::cuda
