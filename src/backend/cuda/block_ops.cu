// Kernels behind the op table (op_table.cpp) that the kernels of ops.h do not cover: the
// Z-Image block's elementwise and row passes with the CPU ops' storage semantics (ops/ops.h):
// `bf` rounds every tensor torch would materialise in bf16 (intermediate by intermediate), as the
// CPU ops do, so a bf16 block on the GPU follows the CPU's roundings (not its summation order).
#include "backend/cuda/block_ops.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/context.h"

namespace zimage::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = 8;

unsigned blocks_for(int64_t n) {
  const unsigned cap = unsigned(ctx().sm_count) * 16u;  // grid-stride loops cover the rest
  const unsigned g = grid_for(n, kThreads);
  return g < cap ? g : cap;
}

__device__ __forceinline__ float rbf(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }
__device__ __forceinline__ float st(float v, bool bf) { return bf ? rbf(v) : v; }

#define ZI_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void convert_into_kernel(const void* x, DType xt, void* y, DType yt, int64_t n) {
  ZI_GRID_STRIDE(i, n) store_f(y, yt, i, load_f(x, xt, i));
}

__global__ void round_bf16_kernel(float* x, int64_t n) { ZI_GRID_STRIDE(i, n) x[i] = rbf(x[i]); }

__global__ void silu_kernel(float* x, int64_t n) { ZI_GRID_STRIDE(i, n) x[i] = x[i] / (1.f + expf(-x[i])); }

__global__ void add_kernel(float* x, const void* y, DType yt, int64_t n) {
  ZI_GRID_STRIDE(i, n) x[i] += load_f(y, yt, i);
}

// y = st(x * scale[item])
__global__ void modulate_kernel(const void* x, DType xt, const float* scale, float* y, int64_t T, int64_t N,
                                ItemRows items, bool bf) {
  ZI_GRID_STRIDE(i, T * N) {
    const int64_t r = i / N, c = i % N;
    y[i] = st(load_f(x, xt, i) * scale[int64_t(items.item_of(r)) * N + c], bf);
  }
}

// x = st(x + (gate ? st(gate[item] * y) : y))
__global__ void gate_add_kernel(float* x, const float* gate, const void* y, DType yt, int64_t T, int64_t N,
                                ItemRows items, bool bf) {
  ZI_GRID_STRIDE(i, T * N) {
    const int64_t r = i / N, c = i % N;
    const float yv = load_f(y, yt, i);
    const float d = gate ? st(gate[int64_t(items.item_of(r)) * N + c] * yv, bf) : yv;
    x[i] = st(x[i] + d, bf);
  }
}

// out = st(st(silu(in(a))) * in(b)), in() rounding to bf16 as read when round_in.
__global__ void silu_mul_kernel(const void* a, DType at, const void* b, DType bt, void* y, DType yt, int64_t n, bool bf,
                                bool round_in) {
  ZI_GRID_STRIDE(i, n) {
    float av = load_f(a, at, i), bv = load_f(b, bt, i);
    if (round_in) av = rbf(av), bv = rbf(bv);
    store_f(y, yt, i, st(st(av / (1.f + expf(-av)), bf) * bv, bf));
  }
}

// scale_msa = st(1 + c0), gate_msa = st(tanh(c1)), scale_mlp = st(1 + c2), gate_mlp = st(tanh(c3))
__global__ void adaln_chunks_kernel(const float* mod, float* s0, float* g0, float* s1, float* g1, int64_t B, int64_t N,
                                    bool bf) {
  ZI_GRID_STRIDE(i, B * N) {
    const float* m = mod + (i / N) * 4 * N + i % N;
    s0[i] = st(1.f + m[0], bf);
    g0[i] = st(tanhf(m[N]), bf);
    s1[i] = st(1.f + m[2 * N], bf);
    g1[i] = st(tanhf(m[3 * N]), bf);
  }
}

struct RmsArgs {
  const void* x;
  DType xt;            // rows to normalise
  bool round_in;       // x rounded to bf16 as read (a raw f32 GEMM result)
  bool bf;             // bf16 steps: n = bf16(x * inv), then bf16(n * w)
  const float* w;      // [N] or null
  const float* scale;  // [items, N] or null: out = st(n * scale[item])
  const float* gate;   // gate-add mode only: [items, N] or null
  float* resid;        // gate-add mode: resid = st(resid + (gate ? st(gate * n) : n)); else null
  void* out;
  DType ot;  // plain mode: out = n (or n * scale), stored as ot
  int64_t rows, N;
  float eps;
  ItemRows items;
};

__global__ void rms_kernel(RmsArgs a) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * int64_t(kWarpsPerBlock) + threadIdx.x / 32;
  if (row >= a.rows) return;
  const int64_t base = row * a.N;
  float ss = 0.f;
  for (int64_t i = lane; i < a.N; i += 32) {
    float v = load_f(a.x, a.xt, base + i);
    if (a.round_in) v = rbf(v);
    ss += v * v;
  }
  const float inv = rsqrtf(warp_sum(ss) / float(a.N) + a.eps);
  const int64_t item = (a.scale || a.gate) ? int64_t(a.items.item_of(row)) * a.N : 0;
  // Each lane reads its elements before writing them, so out == x (in place) is safe.
  for (int64_t i = lane; i < a.N; i += 32) {
    float v = load_f(a.x, a.xt, base + i);
    if (a.round_in) v = rbf(v);
    float n = st(v * inv, a.bf);
    if (a.w) n = st(n * a.w[i], a.bf);
    if (a.resid) {
      const float d = a.gate ? st(a.gate[item + i] * n, a.bf) : n;
      a.resid[base + i] = st(a.resid[base + i] + d, a.bf);
    } else {
      store_f(a.out, a.ot, base + i, a.scale ? n * a.scale[item + i] : n);
    }
  }
}

const float* f32_ptr(const char* op, const DeviceTensor* t, const char* name, int64_t numel) {
  if (!t || !t->defined() || t->numel() == 0) return nullptr;
  if (t->dtype() != DType::F32 || (numel >= 0 && t->numel() != numel))
    fail("[", op, "] ", name, " must be float32 with ", numel, " elements, got ", dtype_name(t->dtype()), " ",
         shape_str(t->shape()));
  return static_cast<const float*>(t->data());
}

void check_f32(const char* op, const DeviceTensor& x, const char* name) {
  if (x.dtype() != DType::F32) fail("[", op, "] ", name, " must be float32, got ", dtype_name(x.dtype()));
}

void launch_rms(RmsArgs a) {
  if (a.rows == 0 || a.N == 0) return;
  rms_kernel<<<grid_for(a.rows, kWarpsPerBlock), kWarpsPerBlock * 32, 0, ctx().stream>>>(a);
  ZI_CUDA_CHECK_LAUNCH("rms_kernel");
}

}  // namespace

void convert_into(const DeviceTensor& x, DeviceTensor& out) {
  if (x.numel() != out.numel())
    fail("[convert] ", shape_str(x.shape()), " into ", shape_str(out.shape()), ": element counts differ");
  if (x.numel() == 0) return;
  convert_into_kernel<<<blocks_for(x.numel()), kThreads, 0, ctx().stream>>>(x.data(), x.dtype(), out.data(),
                                                                            out.dtype(), x.numel());
  ZI_CUDA_CHECK_LAUNCH("convert_into_kernel");
}

void round_to_bf16_(DeviceTensor& x) {
  if (x.dtype() != DType::F32 || x.numel() == 0) return;  // bf16 / f16 storage is rounded already
  round_bf16_kernel<<<blocks_for(x.numel()), kThreads, 0, ctx().stream>>>(static_cast<float*>(x.data()), x.numel());
  ZI_CUDA_CHECK_LAUNCH("round_bf16_kernel");
}

void silu_(DeviceTensor& x) {
  check_f32("silu", x, "x");
  if (x.numel() == 0) return;
  silu_kernel<<<blocks_for(x.numel()), kThreads, 0, ctx().stream>>>(static_cast<float*>(x.data()), x.numel());
  ZI_CUDA_CHECK_LAUNCH("silu_kernel");
}

void add_(DeviceTensor& x, const DeviceTensor& y) {
  check_f32("add", x, "x");
  if (x.shape() != y.shape()) fail("[add] shapes ", shape_str(x.shape()), " and ", shape_str(y.shape()), " differ");
  if (x.numel() == 0) return;
  add_kernel<<<blocks_for(x.numel()), kThreads, 0, ctx().stream>>>(static_cast<float*>(x.data()), y.data(), y.dtype(),
                                                                   x.numel());
  ZI_CUDA_CHECK_LAUNCH("add_kernel");
}

DeviceTensor modulate(const DeviceTensor& x, const DeviceTensor& scale, const std::vector<int64_t>& rows, bool bf) {
  if (x.ndim() != 2 || scale.ndim() != 2 || x.dim(1) != scale.dim(1))
    fail("[modulate] x ", shape_str(x.shape()), " and scale ", shape_str(scale.shape()), " disagree");
  const int64_t T = x.dim(0), N = x.dim(1);
  const ItemRows items = make_item_rows("modulate", rows, T, scale.dim(0));
  const float* s = f32_ptr("modulate", &scale, "scale", scale.numel());
  DeviceTensor y = DeviceTensor::empty(DType::F32, x.shape());
  if (x.numel() == 0) return y;
  modulate_kernel<<<blocks_for(x.numel()), kThreads, 0, ctx().stream>>>(x.data(), x.dtype(), s,
                                                                        static_cast<float*>(y.data()), T, N, items, bf);
  ZI_CUDA_CHECK_LAUNCH("modulate_kernel");
  return y;
}

void gate_add_prepared_(DeviceTensor& x, const DeviceTensor* gate, const DeviceTensor& y,
                        const std::vector<int64_t>& rows, bool bf) {
  check_f32("gate_add", x, "x");
  if (x.ndim() != 2 || y.numel() != x.numel())
    fail("[gate_add] x ", shape_str(x.shape()), " and y ", shape_str(y.shape()), " disagree");
  const int64_t T = x.dim(0), N = x.dim(1);
  const bool has_gate = gate && gate->defined() && gate->numel() > 0;
  if (has_gate && (gate->ndim() != 2 || gate->dim(1) != N))
    fail("[gate_add] gate ", shape_str(gate->shape()), " does not match x ", shape_str(x.shape()));
  const ItemRows items =
      make_item_rows("gate_add", rows, T, has_gate ? gate->dim(0) : int64_t(rows.empty() ? 1 : rows.size()));
  const float* g = has_gate ? f32_ptr("gate_add", gate, "gate", gate->numel()) : nullptr;
  if (x.numel() == 0) return;
  gate_add_kernel<<<blocks_for(x.numel()), kThreads, 0, ctx().stream>>>(static_cast<float*>(x.data()), g, y.data(),
                                                                        y.dtype(), T, N, items, bf);
  ZI_CUDA_CHECK_LAUNCH("gate_add_kernel");
}

void silu_mul_into(const DeviceTensor& a, const DeviceTensor& b, DeviceTensor& out, bool bf, bool round_in) {
  if (a.numel() != b.numel() || out.numel() != a.numel())
    fail("[silu_mul] shapes ", shape_str(a.shape()), ", ", shape_str(b.shape()), " and out ", shape_str(out.shape()),
         " disagree");
  if (a.numel() == 0) return;
  silu_mul_kernel<<<blocks_for(a.numel()), kThreads, 0, ctx().stream>>>(
      a.data(), a.dtype(), b.data(), b.dtype(), out.data(), out.dtype(), a.numel(), bf, round_in);
  ZI_CUDA_CHECK_LAUNCH("silu_mul_kernel");
}

std::array<DeviceTensor, 4> adaln_chunks(const DeviceTensor& mod, bool bf) {
  if (mod.ndim() != 2 || mod.dtype() != DType::F32 || mod.dim(1) % 4 != 0)
    fail("[adaln_chunks] expected a float32 [B, 4 * N] tensor, got ", dtype_name(mod.dtype()), " ",
         shape_str(mod.shape()));
  const int64_t B = mod.dim(0), N = mod.dim(1) / 4;
  std::array<DeviceTensor, 4> c;
  for (auto& t : c) t = DeviceTensor::empty(DType::F32, {B, N});
  if (B * N == 0) return c;
  adaln_chunks_kernel<<<blocks_for(B * N), kThreads, 0, ctx().stream>>>(
      static_cast<const float*>(mod.data()), static_cast<float*>(c[0].data()), static_cast<float*>(c[1].data()),
      static_cast<float*>(c[2].data()), static_cast<float*>(c[3].data()), B, N, bf);
  ZI_CUDA_CHECK_LAUNCH("adaln_chunks_kernel");
  return c;
}

void rms_norm_into(const DeviceTensor& x, const DeviceTensor* weight, float eps, bool bf, bool round_in,
                   const DeviceTensor* scale, const std::vector<int64_t>& rows, DeviceTensor& out) {
  const int64_t N = x.ndim() ? x.dim(-1) : 0, R = N ? x.numel() / N : 0;
  if (out.numel() != x.numel())
    fail("[rms_norm] output ", shape_str(out.shape()), " does not match x ", shape_str(x.shape()));
  RmsArgs a{};
  a.x = x.data(), a.xt = x.dtype(), a.round_in = round_in, a.bf = bf;
  a.w = f32_ptr("rms_norm", weight, "weight", N);
  a.scale = f32_ptr("rms_norm", scale, "scale", -1);
  if (a.scale && (scale->ndim() != 2 || scale->dim(1) != N))
    fail("[rms_norm] scale ", shape_str(scale->shape()), " does not match x ", shape_str(x.shape()));
  a.items = make_item_rows("rms_norm", rows, R, a.scale ? scale->dim(0) : int64_t(rows.empty() ? 1 : rows.size()));
  a.out = out.data(), a.ot = out.dtype();
  a.rows = R, a.N = N, a.eps = eps;
  launch_rms(a);
}

void rms_norm_gate_add_(DeviceTensor& resid, const DeviceTensor* gate, const DeviceTensor& y,
                        const DeviceTensor* weight, float eps, bool bf, bool round_in,
                        const std::vector<int64_t>& rows) {
  check_f32("rms_norm_gate_add", resid, "x");
  if (resid.ndim() != 2 || y.numel() != resid.numel())
    fail("[rms_norm_gate_add] x ", shape_str(resid.shape()), " and y ", shape_str(y.shape()), " disagree");
  const int64_t T = resid.dim(0), N = resid.dim(1);
  RmsArgs a{};
  a.x = y.data(), a.xt = y.dtype(), a.round_in = round_in, a.bf = bf;
  a.w = f32_ptr("rms_norm_gate_add", weight, "weight", N);
  a.gate = f32_ptr("rms_norm_gate_add", gate, "gate", -1);
  if (a.gate && (gate->ndim() != 2 || gate->dim(1) != N))
    fail("[rms_norm_gate_add] gate ", shape_str(gate->shape()), " does not match x ", shape_str(resid.shape()));
  a.items =
      make_item_rows("rms_norm_gate_add", rows, T, a.gate ? gate->dim(0) : int64_t(rows.empty() ? 1 : rows.size()));
  a.resid = static_cast<float*>(resid.data());
  a.rows = T, a.N = N, a.eps = eps;
  launch_rms(a);
}

}  // namespace zimage::cuda
