// Test-side GGUF writing: a v3 file from (name, torch shape, ggml type, bytes) entries, and
// random but well-scaled blocks of the ggml block types (random bytes with the scale fields set
// to a small finite f16, so that dequantized values stay moderate).
#pragma once
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/gguf.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "util/test_util.h"

namespace zimage::test {

struct GgufEntry {
  std::string name;
  Shape shape;  // torch order
  uint32_t type;
  std::string bytes;
};

// One metadata key/value: its gguf_type and the value's bytes as the file holds them.
struct GgufKv {
  std::string key;
  uint32_t type;
  std::string bytes;
};
namespace gguf_kv {
inline std::string str_bytes(const std::string& v) {
  std::string b(8, '\0');
  const uint64_t n = v.size();
  std::memcpy(&b[0], &n, 8);
  return b + v;
}
template <class T>
std::string pod(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}
inline GgufKv str(const std::string& k, const std::string& v) { return {k, 8, str_bytes(v)}; }
inline GgufKv u32(const std::string& k, uint32_t v) { return {k, 4, pod(v)}; }
inline GgufKv f32(const std::string& k, float v) { return {k, 6, pod(v)}; }
inline GgufKv boolean(const std::string& k, bool v) { return {k, 7, std::string(1, char(v))}; }
inline GgufKv strs(const std::string& k, const std::vector<std::string>& v) {
  std::string b = pod(uint32_t(8)) + pod(uint64_t(v.size()));
  for (const std::string& e : v) b += str_bytes(e);
  return {k, 9, b};
}
inline GgufKv i32s(const std::string& k, const std::vector<int32_t>& v) {
  std::string b = pod(uint32_t(5)) + pod(uint64_t(v.size()));
  b.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  return {k, 9, b};
}
}  // namespace gguf_kv

inline std::string gguf_bytes(const std::vector<GgufEntry>& ts, const std::vector<GgufKv>& kvs = {}) {
  std::string s = "GGUF";
  auto put = [&](const void* p, size_t n) { s.append(static_cast<const char*>(p), n); };
  auto u32 = [&](uint32_t v) { put(&v, 4); };
  auto u64 = [&](uint64_t v) { put(&v, 8); };
  u32(3);
  u64(ts.size());
  u64(kvs.size());
  for (const GgufKv& kv : kvs) {
    u64(kv.key.size());
    s += kv.key;
    u32(kv.type);
    s += kv.bytes;
  }
  uint64_t off = 0;
  for (const GgufEntry& t : ts) {
    u64(t.name.size());
    s += t.name;
    u32(uint32_t(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) u64(uint64_t(*it));
    u32(t.type);
    u64(off);
    off += (t.bytes.size() + 31) / 32 * 32;
  }
  while (s.size() % 32) s += '\0';
  for (const GgufEntry& t : ts) {
    s += t.bytes;
    while (s.size() % 32) s += '\0';
  }
  return s;
}

// `n` elements (a whole number of blocks) of block type `type`: random bytes, scales set to
// `scale` (and mins to scale / 2).
inline std::string random_blocks(uint32_t type, int64_t n, uint32_t seed, float scale) {
  const gguf::TypeTraits* tt = gguf::type_traits(type);
  std::mt19937 rng(seed);
  std::string b(size_t(n / tt->block * tt->bytes), '\0');
  for (char& c : b) c = char(rng() & 0xFF);
  const uint16_t d = f32_to_f16(scale), m = f32_to_f16(scale / 2);
  for (size_t i = 0; i < b.size(); i += size_t(tt->bytes)) {
    char* blk = &b[i];
    switch (gguf::GgmlType(type)) {
      case gguf::GgmlType::Q4_0:
      case gguf::GgmlType::Q5_0:
      case gguf::GgmlType::Q8_0:
        std::memcpy(blk, &d, 2);
        break;
      case gguf::GgmlType::Q4_K:
      case gguf::GgmlType::Q5_K:
        std::memcpy(blk, &d, 2);
        std::memcpy(blk + 2, &m, 2);
        break;
      case gguf::GgmlType::Q2_K:
        std::memcpy(blk + 80, &d, 2);
        std::memcpy(blk + 82, &m, 2);
        break;
      case gguf::GgmlType::Q3_K:
        std::memcpy(blk + 108, &d, 2);
        break;
      case gguf::GgmlType::Q6_K:
        std::memcpy(blk + 208, &d, 2);
        break;
      default:
        break;
    }
  }
  return b;
}

// The tiny fp32 transformer as <dir>/t.gguf (types chosen by `pick(name, tensor, i)`, i counting
// the quantized tensors so far; quantized ones get random well-scaled blocks) and the same
// weights dequantized as <dir>/dense/{config.json, diffusion_pytorch_model.safetensors}.
struct QuantizedTiny {
  std::string dir, gguf, dense_dir;
  std::map<std::string, int> per_type;
};

inline QuantizedTiny write_quantized_tiny_transformer(
    const std::string& dir, const std::function<uint32_t(const std::string&, const Tensor&, int)>& pick) {
  namespace fs = std::filesystem;
  QuantizedTiny m;
  m.dir = dir;
  const std::string src = fixture("models/tiny-fp32/transformer");
  WeightStore store = WeightStore::open_dir(src);
  std::vector<GgufEntry> es;
  int i = 0;
  for (const std::string& name : store.names()) {
    const Tensor t = store.get(name).to(DType::F32);
    const uint32_t type = pick(name, t, i);
    GgufEntry e{name, t.shape(), type, {}};
    if (type == uint32_t(gguf::GgmlType::F32)) {
      e.bytes.assign(static_cast<const char*>(t.raw()), size_t(t.nbytes()));
    } else {
      const bool k = gguf::type_traits(type)->block == 256;
      e.bytes = random_blocks(type, t.numel(), uint32_t(100 + i), k ? 2e-4f : 2e-3f);
      ++i;
    }
    ++m.per_type[gguf::type_name(type)];
    es.push_back(std::move(e));
  }
  m.gguf = m.dir + "/t.gguf";
  write_file(m.gguf, gguf_bytes(es));
  gguf::File f(m.gguf);
  std::map<std::string, Tensor> dense;
  for (const gguf::TensorInfo& t : f.tensors()) dense[t.name] = f.dequantize(t.name);
  m.dense_dir = m.dir + "/dense";
  fs::create_directories(m.dense_dir);
  fs::copy_file(src + "/config.json", m.dense_dir + "/config.json");
  save_safetensors(m.dense_dir + "/diffusion_pytorch_model.safetensors", dense);
  return m;
}

// Every 2-D linear weight whose rows are a whole number of blocks: Q8_0/Q5_0/Q4_0 (32-multiples)
// or Q6_K/Q5_K/Q4_K/Q3_K/Q2_K (256-multiples) in turn; the rest F32.
inline uint32_t quantize_linears(const std::string& name, const Tensor& t, int i) {
  static const gguf::GgmlType k32[] = {gguf::GgmlType::Q8_0, gguf::GgmlType::Q5_0, gguf::GgmlType::Q4_0};
  static const gguf::GgmlType k256[] = {gguf::GgmlType::Q6_K, gguf::GgmlType::Q5_K, gguf::GgmlType::Q4_K,
                                        gguf::GgmlType::Q3_K, gguf::GgmlType::Q2_K};
  const bool linear = t.ndim() == 2 && name.find("pad_token") == std::string::npos;
  if (linear && t.dim(1) % 256 == 0) return uint32_t(k256[i % 5]);
  if (linear && t.dim(1) % 32 == 0) return uint32_t(k32[i % 3]);
  return uint32_t(gguf::GgmlType::F32);
}

}  // namespace zimage::test
