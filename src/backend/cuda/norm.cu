// Row normalisations, one warp per row: RMSNorm (optional weight) and LayerNorm without affine,
// each optionally followed by adaLN modulation y *= (1 + scale[item]).
// Statistics accumulate in float32 (LayerNorm: mean first, then the centred sum of squares).
#include "backend/cuda/common.cuh"
#include "backend/cuda/context.h"

namespace zimage::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

struct NormArgs {
  const void* x;
  DType xt;
  void* y;
  DType yt;
  const void* weight;
  DType wt;  // RMSNorm weight [dim] or null
  const void* scale;
  DType st;  // adaLN scale [items, dim] or null
  int64_t rows, dim;
  float eps;
  ItemRows items;
};

template <bool kLayerNorm>
__global__ void norm_kernel(NormArgs a) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * int64_t(kWarpsPerBlock) + threadIdx.x / 32;
  if (row >= a.rows) return;
  const int64_t base = row * a.dim;
  float mean = 0.f, inv;
  if (kLayerNorm) {
    float s = 0.f;
    for (int64_t i = lane; i < a.dim; i += 32) s += load_f(a.x, a.xt, base + i);
    mean = warp_sum(s) / float(a.dim);
    float v = 0.f;
    for (int64_t i = lane; i < a.dim; i += 32) {
      const float d = load_f(a.x, a.xt, base + i) - mean;
      v += d * d;
    }
    inv = rsqrtf(warp_sum(v) / float(a.dim) + a.eps);
  } else {
    float ss = 0.f;
    for (int64_t i = lane; i < a.dim; i += 32) {
      const float v = load_f(a.x, a.xt, base + i);
      ss += v * v;
    }
    inv = rsqrtf(warp_sum(ss) / float(a.dim) + a.eps);
  }
  const int64_t sbase = a.scale ? int64_t(a.items.item_of(row)) * a.dim : 0;
  for (int64_t i = lane; i < a.dim; i += 32) {
    float v = (load_f(a.x, a.xt, base + i) - mean) * inv;
    if (a.weight) v *= load_f(a.weight, a.wt, i);
    if (a.scale) v *= 1.f + load_f(a.scale, a.st, sbase + i);
    store_f(a.y, a.yt, base + i, v);
  }
}

DeviceTensor run_norm(const char* op, bool layer, const DeviceTensor& x, const DeviceTensor* weight, float eps,
                      const DeviceTensor* scale, const std::vector<int64_t>& rows) {
  if (x.ndim() < 1) fail("[", op, "] input must have at least one dimension");
  const int64_t dim = x.dim(-1), nrows = dim ? x.numel() / dim : 0;
  if (weight && weight->numel() != dim)
    fail("[", op, "] weight has ", weight->numel(), " elements, input last dim is ", dim);
  NormArgs a{x.data(), x.dtype(), nullptr, x.dtype(), nullptr, DType::F32, nullptr, DType::F32, nrows, dim, eps, {}};
  if (weight) a.weight = weight->data(), a.wt = weight->dtype();
  if (scale) {
    if (x.ndim() != 2 || scale->ndim() != 2 || scale->dim(1) != dim)
      fail("[", op, "] x ", shape_str(x.shape()), " and scale ", shape_str(scale->shape()), " disagree");
    a.items = make_item_rows(op, rows, nrows, scale->dim(0));
    a.scale = scale->data(), a.st = scale->dtype();
  }
  DeviceTensor y = DeviceTensor::empty(x.dtype(), x.shape());
  a.y = y.data();
  if (nrows == 0) return y;
  const unsigned blocks = grid_for(nrows, kWarpsPerBlock);
  if (layer)
    norm_kernel<true><<<blocks, kWarpsPerBlock * 32, 0, ctx().stream>>>(a);
  else
    norm_kernel<false><<<blocks, kWarpsPerBlock * 32, 0, ctx().stream>>>(a);
  ZI_CUDA_CHECK_LAUNCH(op);
  return y;
}

}  // namespace

DeviceTensor rms_norm(const DeviceTensor& x, const DeviceTensor* weight, float eps, const DeviceTensor* scale,
                      const std::vector<int64_t>& rows) {
  return run_norm("rms_norm", false, x, weight, eps, scale, rows);
}

DeviceTensor layer_norm(const DeviceTensor& x, float eps, const DeviceTensor* scale, const std::vector<int64_t>& rows) {
  return run_norm("layer_norm", true, x, nullptr, eps, scale, rows);
}

}  // namespace zimage::cuda
