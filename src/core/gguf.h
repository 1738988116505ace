// GGUF (v2/v3, little-endian) files: header, metadata key/values, tensor infos, alignment and
// the data section, every count, size and offset checked against the file before it is used
// (the lessons of llama.cpp's CVE-2025-53630 / CVE-2026-27940: no count sizes an allocation, no
// sum or product can wrap). Tensors stay in the memory mapping; dequantize_rows() turns a run of
// rows of a ggml type into float32, bit-identical to the `gguf` Python package's dequantize().
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace zimage::gguf {

// ggml tensor types (ggml.h's enum ggml_type values).
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

struct TypeTraits {
  const char* name;  // "Q4_K"
  int64_t block;     // elements per block
  int64_t bytes;     // bytes per block
  bool dequantize;   // dequantize_rows() supports it
};
// Traits of a ggml type id the format defines, or nullptr (an unknown or removed type).
const TypeTraits* type_traits(uint32_t type);
std::string type_name(uint32_t type);  // "Q4_K", or "type 4" for an unknown id

// Metadata value types (gguf_type).
enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

struct Value {
  ValueType type = ValueType::U8;
  uint64_t u = 0;  // unsigned integers and bool
  int64_t i = 0;   // signed integers
  double f = 0;    // floats
  std::string s;   // STRING
  // ARRAY: element type and count; the elements stay in the file (strings: `strings`).
  ValueType elem = ValueType::U8;
  uint64_t count = 0;
  std::vector<std::string> strings;
  uint64_t array_offset = 0;  // ARRAY of a scalar type: where its elements start in the file
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the innermost (contiguous) dimension
  uint32_t type = 0;
  uint64_t offset = 0;  // from the start of the data section
  uint64_t nbytes = 0;
  Shape shape() const;  // torch order (ne reversed)
  int64_t numel() const;
};

class File {
 public:
  static constexpr uint64_t kMaxAlignment = 1u << 20;
  // Maps and validates `path`; every problem is an Error "gguf: <path>: ...".
  explicit File(const std::string& path);
  // Validates a buffer (kept alive by `owner`); `name` goes into the errors.
  File(std::shared_ptr<const void> owner, const uint8_t* data, size_t size, std::string name);

  const std::string& path() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  size_t file_size() const { return size_; }
  const std::shared_ptr<const void>& owner() const { return owner_; }  // keeps the bytes alive
  const std::map<std::string, Value>& metadata() const { return kv_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in file order
  const TensorInfo* find(const std::string& name) const;
  // The tensor's bytes in the mapping.
  const uint8_t* data(const TensorInfo& t) const { return base_ + data_offset_ + t.offset; }
  // The elements of metadata array `key` of an integer (or bool) type, as int64; an Error naming
  // the key when it is absent or not such an array.
  std::vector<int64_t> int_array(const std::string& key) const;
  // The tensor as float32 (dequantized), shape in torch order; an Error for unsupported types.
  Tensor dequantize(const std::string& name) const;

 private:
  void parse();
  std::string name_;
  std::shared_ptr<const void> owner_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, Value> kv_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

// Dequantizes `n` consecutive elements (a multiple of the type's block size) of type `type`
// starting at `src` into `dst`, exactly as gguf.quants.dequantize does (float32 arithmetic,
// same operation order). An Error for a type it does not support.
void dequantize_rows(uint32_t type, const void* src, float* dst, int64_t n);

}  // namespace zimage::gguf
