// Memory-mapped safetensors files, validated as the reference (Rust) parser does, and the
// weight set of one model component (a single file or shards through *.safetensors.index.json).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace zimage {

struct TensorInfo {
  std::string dtype;  // as written in the header ("BF16", "F32", ...)
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
};

class SafeTensorsFile {
 public:
  static constexpr uint64_t kMaxHeader = 100'000'000;
  // Opens and validates `path`; every problem is an Error naming the file.
  explicit SafeTensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // A read-only view into the mapping (float dtypes only).
  Tensor get(const std::string& name) const;
  // The stored bytes of a tensor of any dtype (end - begin of them), and the mapping's owner.
  const uint8_t* bytes(const std::string& name) const;
  const std::shared_ptr<const void>& owner() const { return map_; }
  size_t file_size() const { return size_; }
  // The mapping's owner (what views keep alive).
  const std::shared_ptr<const void>& mapping() const { return map_; }

 private:
  std::string path_;
  std::shared_ptr<const void> map_;
  size_t size_ = 0;
  const char* data_ = nullptr;  // start of the data section
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor stored in a ggml block format (GGUF) or as float8_e4m3fn (safetensors F8_E4M3,
// ggml_type = fp8::kE4M3Type), as it lies in the mapping.
struct QuantizedTensor {
  uint32_t ggml_type = 0;
  Shape shape;  // torch order
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<const void> keepalive;
  // F8_E4M3 only: the file's scale (`<name minus .weight>.scale_weight` or `.weight_scale`):
  // empty = none, one value = per tensor, shape[0] values = per row. Upcast = f32(code) * scale.
  std::vector<float> scale;
};
// Row `row` of `q` (shape[0] rows of numel / shape[0] values) as float32: gguf::dequantize_rows,
// or the fp8 upcast with its scale.
void dequantize_row(const QuantizedTensor& q, int64_t row, float* dst);
// "Q4_K", "F8_E4M3", ...
std::string quantized_type_name(uint32_t type);

namespace gguf {
class File;
}

// A tensor a model expects: its name and shape (any floating dtype).
struct TensorSpec {
  std::string name;
  Shape shape;
};

// All weights of one component: a folder (e.g. "<model>/transformer"), one .safetensors file, or
// one .gguf file (float tensors are views, quantized ones stay quantized: quantized()).
class WeightStore {
 public:
  // Finds `<stem>.safetensors` or `<stem>.safetensors.index.json` in `dir`, trying the
  // diffusers (diffusion_pytorch_model) and transformers (model) stems.
  static WeightStore open_dir(const std::string& dir);
  // A .safetensors or .gguf file (a .gguf name or the GGUF magic makes it a GGUF file).
  static WeightStore open_file(const std::string& file);
  static WeightStore open_index(const std::string& index_json);

  bool has(const std::string& name) const;
  // Key conversion (single-file layouts): exposes stored tensor `from` (or its rows [row0, row0 +
  // rows): a fused qkv split without a copy, quantized ones too) under the name `to`; `from` is
  // no longer listed unless it is aliased to itself. hide() unlists a tensor.
  void alias(const std::string& from, const std::string& to, int64_t row0 = 0, int64_t rows = -1);
  void hide(const std::string& name);
  // The whole stored tensor `from` under the name `to` with another shape of as many elements
  // (a 1x1 convolution's [C, C, 1, 1] as a linear's [C, C]); not for quantized tensors.
  void alias_reshaped(const std::string& from, const std::string& to, const Shape& shape);
  // A GGUF tensor of a quantized type (Q8_0, Q4_K, ...) or a safetensors F8_E4M3 one:
  // quantized() views it; get() refuses a GGUF one and upcasts an fp8 one (with its scale) to an
  // owned float32 tensor.
  bool is_quantized(const std::string& name) const;
  bool is_fp8(const std::string& name) const;
  QuantizedTensor quantized(const std::string& name, const Shape& expected) const;
  std::vector<std::string> names() const;
  // The tensor, checked against `expected` shape; the error names tensor, expected and actual.
  Tensor get(const std::string& name, const Shape& expected) const;
  Tensor get(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  // Checks that every tensor in `specs` exists with that shape and a dtype get() can return
  // (F32, BF16, F16), from the headers alone: no tensor data is read. The first problem is an
  // Error with the same text get() would give.
  void check(const std::vector<TensorSpec>& specs) const;
  // dtype of the first floating tensor (what the component is stored in)
  DType stored_dtype() const;
  size_t bytes_on_disk() const;
  int64_t num_params() const;
  const std::string& source() const { return source_; }
  // The owner of the file mapping that holds tensor `name` (weights/prefetch.h watches it).
  std::shared_ptr<const void> mapping(const std::string& name) const;

 private:
  std::string source_;
  std::vector<std::shared_ptr<SafeTensorsFile>> files_;
  std::map<std::string, size_t> where_;
  std::shared_ptr<gguf::File> gguf_;             // set for a .gguf store (files_ is then empty)
  std::map<std::string, TensorInfo> gguf_info_;  // dtype = ggml type name, begin/end in the file
  struct View {
    std::string from;
    int64_t row0 = 0, rows = -1;  // -1: the whole tensor
    TensorInfo info;
    bool reshaped = false;  // info.shape differs from the stored shape (alias_reshaped)
  };
  std::map<std::string, View> views_;   // alias()ed names
  std::map<std::string, bool> hidden_;  // stored names that are not listed
  // fp8 scales by stored weight name (per tensor: 1 value; per row: shape[0] values)
  std::map<std::string, std::vector<float>> fp8_scale_;
  void attach_fp8_scales();
  std::vector<float> stored_scale(const std::string& stored) const;
  const TensorInfo& stored_info(const std::string& stored) const;
  QuantizedTensor stored_quantized(const std::string& name, const std::string& stored) const;
  Tensor stored_get(const std::string& name, const std::string& stored) const;
};

}  // namespace zimage

namespace zimage {
// Writes tensors (sorted by name) as a safetensors file, atomically (temporary file in the same
// folder, then rename). Errors name the path and the OS reason; nothing is left on failure.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
}  // namespace zimage
