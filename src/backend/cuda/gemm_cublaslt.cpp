// linear() through cuBLASLt. Row-major y[M, N] = x[M, K] · w[N, K]^T is, in cuBLAS's
// column-major terms, y^T[N, M] = W[N, K] · X^T[K, M] where the stored w is a column-major
// K x N matrix (ld K) used transposed and the stored x a column-major K x M matrix (ld K):
//   m = N, n = M, k = K, op(A) = T on w, op(B) = N on x, C = D = y (column-major N x M, ld N).
// The bias epilogue adds bias[m] = bias[N] to every column, i.e. to every row of y.
// Descriptors, layouts and the heuristic's algorithm are cached per (shape, dtypes, bias,
// pointer alignment); the bias pointer is set on the cached descriptor at each call (all calls
// are on one host thread's stream; the cache is guarded by a mutex).
#include <map>
#include <mutex>
#include <tuple>

#include "backend/cuda/context.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"

namespace zimage::cuda {

namespace {

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::BF16:
      return CUDA_R_16BF;
    case DType::F16:
      return CUDA_R_16F;
    default:
      return CUDA_R_32F;
  }
}

// Largest power of two (<= 256) dividing the address: cuBLASLt picks kernels by alignment.
uint32_t alignment(const void* p) {
  uint32_t a = 256;
  while (a > 1 && (reinterpret_cast<uintptr_t>(p) % a) != 0) a >>= 1;
  return a;
}

struct Key {
  int64_t M, N, K;
  DType xt, yt, bt;
  bool bias;
  uint32_t ax, aw, ay, ab;
  auto tie() const { return std::tie(M, N, K, xt, yt, bt, bias, ax, aw, ay, ab); }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

std::mutex g_mu;
std::map<Key, Plan> g_plans;  // never freed: a process uses a few dozen shapes

Plan make_plan(const Key& k) {
  auto& c = ctx();
  Plan p;
  ZI_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  ZI_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  ZI_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (k.bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    ZI_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    const cudaDataType_t bt = cuda_type(k.bt);
    ZI_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
  }
  ZI_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, cuda_type(k.xt), uint64_t(k.K), uint64_t(k.N), k.K));  // w
  ZI_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, cuda_type(k.xt), uint64_t(k.K), uint64_t(k.M), k.K));  // x
  ZI_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, cuda_type(k.yt), uint64_t(k.N), uint64_t(k.M), k.N));  // y

  cublasLtMatmulPreference_t pref = nullptr;
  ZI_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = c.workspace_bytes;
  ZI_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  ZI_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k.aw, sizeof(k.aw)));
  ZI_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k.ax, sizeof(k.ax)));
  ZI_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k.ay, sizeof(k.ay)));
  ZI_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k.ay, sizeof(k.ay)));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c.lt, p.desc, p.a, p.b, p.c, p.c, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0)
    fail("[linear] cuBLASLt has no algorithm for y[", k.M, ", ", k.N, "] = x[", k.M, ", ", k.K, "] (", dtype_name(k.xt),
         ") · w[", k.N, ", ", k.K, "]^T -> ", dtype_name(k.yt), k.bias ? " with bias " : "",
         k.bias ? dtype_name(k.bt) : "", ": ", cublasLtGetStatusString(st));
  p.algo = res.algo;
  return p;
}

}  // namespace

DeviceTensor linear(const DeviceTensor& x, const DeviceTensor& w, const DeviceTensor* bias, DType out) {
  if (w.ndim() != 2) fail("[linear] weight must be [N, K], got ", shape_str(w.shape()));
  const int64_t N = w.dim(0), K = w.dim(1);
  if (x.ndim() < 1 || x.dim(-1) != K)
    fail("[linear] input ", shape_str(x.shape()), " does not end in K = ", K, " of weight ", shape_str(w.shape()));
  if (x.dtype() != w.dtype() || x.dtype() == DType::F16)
    fail("[linear] input ", dtype_name(x.dtype()), " and weight ", dtype_name(w.dtype()),
         " must both be bfloat16 or both float32");
  if (x.dtype() == DType::F32 && out != DType::F32)
    fail("[linear] float32 inputs give a float32 result, not ", dtype_name(out));
  if (out == DType::F16) fail("[linear] result must be float32 or bfloat16");
  if (bias && (bias->numel() != N || (bias->dtype() != DType::F32 && bias->dtype() != out)))
    fail("[linear] bias ", shape_str(bias->shape()), " ", dtype_name(bias->dtype()), " must be [", N, "] float32 or ",
         dtype_name(out));
  const int64_t M = K ? x.numel() / K : 0;
  Shape ys = x.shape();
  ys.back() = N;
  DeviceTensor y = DeviceTensor::empty(out, ys, "linear");
  if (M == 0 || N == 0) return y;
  if (K == 0) fail("[linear] K = 0 is not supported");

  DeviceTensor bias_conv;  // bias in the result dtype: cuBLASLt's documented default combination
  const DeviceTensor* b = bias;
  if (bias && bias->dtype() != out) {
    bias_conv = convert(*bias, out);
    b = &bias_conv;
  }
  Key key{M,
          N,
          K,
          x.dtype(),
          out,
          b ? b->dtype() : out,
          b != nullptr,
          alignment(x.data()),
          alignment(w.data()),
          alignment(y.data()),
          b ? alignment(b->data()) : 256u};
  auto& c = ctx();
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_plans.find(key);
  if (it == g_plans.end()) it = g_plans.emplace(key, make_plan(key)).first;
  Plan& p = it->second;
  if (b) {
    const void* bp = b->data();
    ZI_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof(bp)));
  }
  const float alpha = 1.f, beta = 0.f;
  ZI_CUBLAS_CHECK(cublasLtMatmul(c.lt, p.desc, &alpha, w.data(), p.a, x.data(), p.b, &beta, y.data(), p.c, y.data(),
                                 p.c, &p.algo, c.workspace, c.workspace_bytes, c.stream));
  ZI_CUDA_CHECK_LAUNCH("cublasLtMatmul");
  return y;
}

}  // namespace zimage::cuda
