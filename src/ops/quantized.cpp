#include "ops/quantized.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "backend/cpu/gemm.h"
#include "backend/cpu/qgemm.h"
#include "core/fp8.h"
#include "core/gguf.h"
#include "core/mapping.h"
#include "core/safetensors.h"

namespace zimage::ops {

namespace {
std::atomic<int64_t> g_live_packed{0};  // bytes of every packed copy alive (kept or transient)
thread_local bool t_transient = false;  // a TransientPacking scope is open on this thread

// A packed copy, counted in live_packed_bytes() while it lives.
struct Counted {
  std::unique_ptr<cpu::QPacked> p;
  explicit Counted(std::unique_ptr<cpu::QPacked> q) : p(std::move(q)) {
    if (p) g_live_packed += int64_t(p->bytes());
  }
  ~Counted() {
    if (p) g_live_packed -= int64_t(p->bytes());
  }
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;
};

}  // namespace

struct QuantPack {
  std::mutex mu;
  std::unique_ptr<Counted> packed;
  const uint8_t* data = nullptr;  // what it was made from (a copy of the matrix edited later repacks)
  uint32_t type = 0;
  int64_t rows = 0, cols = 0;
  size_t row_bytes = 0;
};

std::shared_ptr<QuantPack> new_quant_pack() { return std::make_shared<QuantPack>(); }

TransientPacking::TransientPacking(bool on) : previous_(t_transient) { t_transient = on; }
TransientPacking::~TransientPacking() { t_transient = previous_; }
bool TransientPacking::active() { return t_transient; }

size_t live_packed_bytes() { return size_t(std::max<int64_t>(0, g_live_packed.load())); }

size_t packed_bytes(const QuantizedMatrix& w) {
  if (!w.pack) return 0;
  std::lock_guard<std::mutex> l(w.pack->mu);
  return w.pack->packed && w.pack->packed->p ? w.pack->packed->p->bytes() : 0;
}

int64_t quant_tile_rows(int64_t cols) {
  return std::max<int64_t>(16, kQuantTileBytes / std::max<int64_t>(1, cols * 4)) / 16 * 16;
}

bool uses_integer_gemm(const QuantizedMatrix& w) {
  QuantCompute m = w.mode;
  if (m == QuantCompute::Auto) {
    const char* e = std::getenv("ZIMAGE_QUANT_COMPUTE");
    if (e && std::strcmp(e, "int") == 0)
      m = QuantCompute::Int;
    else if (e && std::strcmp(e, "dequant") == 0)
      m = QuantCompute::Dequant;
    else if (e && *e)
      fail("[linear] ZIMAGE_QUANT_COMPUTE must be int or dequant (got \"", e, "\")");
    else
      m = w.compute == DType::BF16 ? QuantCompute::Int : QuantCompute::Dequant;
  }
  return m == QuantCompute::Int && cpu::qgemm_supports(w.ggml_type);
}

namespace {

std::unique_ptr<Counted> pack_of(const QuantizedMatrix& w) {
  auto c = std::make_unique<Counted>(cpu::qgemm_pack(w.rows, w.cols, w.data, w.row_bytes, w.ggml_type));
  // The packed copy replaces the file's pages (a read-only GGUF mapping rereads them if touched).
  release_file_pages(w.data, size_t(w.rows) * w.row_bytes);
  return c;
}

// The packed copy of w kept with it (made on first use), or null inside a TransientPacking scope
// when none is kept.
const cpu::QPacked* kept_packed(const QuantizedMatrix& w) {
  QuantPack& c = *w.pack;
  std::lock_guard<std::mutex> l(c.mu);
  const bool same = c.packed && c.data == w.data && c.type == w.ggml_type && c.rows == w.rows && c.cols == w.cols &&
                    c.row_bytes == w.row_bytes;
  if (same) return c.packed->p.get();
  if (t_transient) return nullptr;
  c.packed.reset();
  c.packed = pack_of(w);
  c.data = w.data;
  c.type = w.ggml_type;
  c.rows = w.rows;
  c.cols = w.cols;
  c.row_bytes = w.row_bytes;
  return c.packed->p.get();
}

int64_t check(const Tensor& x, const QuantizedMatrix& w, const Tensor* bias) {
  const int64_t N = w.rows, K = w.cols;
  if (x.dtype() != DType::F32 && !(x.dtype() == DType::BF16 && w.compute == DType::BF16))
    fail("[linear] input must be float32 (or bfloat16 in a bfloat16 run), got ", dtype_name(x.dtype()));
  if (x.ndim() < 1 || x.dim(-1) != K)
    fail("[linear] input shape ", shape_str(x.shape()), " does not end in ", K, " (quantized ",
         quantized_type_name(w.ggml_type), " weight [", N, ", ", K, "])");
  if (bias && bias->numel() != N) fail("[linear] bias has ", bias->numel(), " elements, expected ", N);
  bool usable = false;
  if (w.ggml_type == fp8::kE4M3Type) {
    usable = w.row_bytes == size_t(K) && (w.scale.size() <= 1 || w.scale.size() == size_t(N));
  } else {
    const gguf::TypeTraits* tt = gguf::type_traits(w.ggml_type);
    usable = tt && tt->dequantize && K % tt->block == 0 && w.row_bytes == size_t(K / tt->block * tt->bytes) &&
             w.scale.empty();
  }
  if (!usable || !w.data)
    fail("[linear] quantized weight [", N, ", ", K, "] of ", quantized_type_name(w.ggml_type), " is not usable");
  return K ? x.numel() / K : 0;
}

void run(const Tensor& x, const QuantizedMatrix& w, const Tensor* bias, Tensor& y) {
  const int64_t M = check(x, w, bias), N = w.rows, K = w.cols;
  Tensor b32;
  if (bias) b32 = bias->to(DType::F32);
  const float* bp = bias ? b32.f32() : nullptr;
  if (uses_integer_gemm(w)) {
    if (!w.pack) fail("[linear] quantized weight [", N, ", ", K, "] has no pack cache");
    if (const cpu::QPacked* kept = kept_packed(w)) {
      cpu::qgemm_nt_packed(M, x.raw(), x.dtype(), K, *kept, bp, y.raw(), N, y.dtype());
      return;
    }
    const std::unique_ptr<Counted> transient = pack_of(w);  // freed when the GEMM is done
    cpu::qgemm_nt_packed(M, x.raw(), x.dtype(), K, *transient->p, bp, y.raw(), N, y.dtype());
    return;
  }
  const bool bf16 = w.compute == DType::BF16;
  const Tensor xc = x.to(bf16 ? DType::BF16 : DType::F32);  // shared when already so
  const int64_t tile = std::min(N, quant_tile_rows(K));
  std::vector<float> wf(size_t(tile * K));
  std::vector<uint16_t> wb(bf16 ? size_t(tile * K) : 0);
  const size_t ysz = dtype_size(y.dtype());
  for (int64_t n0 = 0; n0 < N; n0 += tile) {
    const int64_t nb = std::min(tile, N - n0);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < nb; ++r) {
      float* dst = wf.data() + r * K;
      const uint8_t* src = w.data + size_t(n0 + r) * w.row_bytes;
      if (w.ggml_type == fp8::kE4M3Type)
        fp8::e4m3_to_f32(src, dst, K, w.scale.empty() ? nullptr : w.scale.data() + (w.scale.size() == 1 ? 0 : n0 + r));
      else
        gguf::dequantize_rows(w.ggml_type, src, dst, K);
      if (bf16)
        for (int64_t k = 0; k < K; ++k) wb[size_t(r * K + k)] = f32_to_bf16(dst[k]);
    }
    cpu::gemm_nt_ex(M, nb, K, xc.raw(), K, bf16 ? static_cast<const void*>(wb.data()) : wf.data(),
                    bf16 ? DType::BF16 : DType::F32, bp ? bp + n0 : nullptr,
                    static_cast<char*>(y.raw()) + size_t(n0) * ysz, N, y.dtype());
  }
  if (t_transient) release_file_pages(w.data, size_t(N) * w.row_bytes);
}

}  // namespace

Tensor linear(const Tensor& x, const QuantizedMatrix& w, const Tensor* bias) {
  check(x, w, bias);
  Shape out_shape = x.shape();
  out_shape.back() = w.rows;
  Tensor y = Tensor::empty(DType::F32, out_shape);
  run(x, w, bias, y);
  return y;
}

void linear_into(const Tensor& x, const QuantizedMatrix& w, const Tensor* bias, Tensor& y) {
  const int64_t M = check(x, w, bias);
  if (y.numel() != M * w.rows || y.read_only())
    fail("[linear] output ", shape_str(y.shape()), " does not hold ", M, " x ", w.rows, " results");
  if (y.dtype() != DType::F32 && !(y.dtype() == DType::BF16 && w.compute == DType::BF16))
    fail("[linear] output dtype ", dtype_name(y.dtype()), " needs a bfloat16 run");
  run(x, w, bias, y);
}

}  // namespace zimage::ops
