#include "core/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "core/file_io.h"

namespace zimage::gguf {

namespace {

constexpr uint64_t kInt64Max = uint64_t(std::numeric_limits<int64_t>::max());

const std::map<uint32_t, TypeTraits>& traits_table() {
  static const std::map<uint32_t, TypeTraits> k = {
      {0, {"F32", 1, 4, true}},          {1, {"F16", 1, 2, true}},          {2, {"Q4_0", 32, 18, true}},
      {3, {"Q4_1", 32, 20, false}},      {6, {"Q5_0", 32, 22, true}},       {7, {"Q5_1", 32, 24, false}},
      {8, {"Q8_0", 32, 34, true}},       {9, {"Q8_1", 32, 40, false}},      {10, {"Q2_K", 256, 84, true}},
      {11, {"Q3_K", 256, 110, true}},    {12, {"Q4_K", 256, 144, true}},    {13, {"Q5_K", 256, 176, true}},
      {14, {"Q6_K", 256, 210, true}},    {15, {"Q8_K", 256, 292, false}},   {16, {"IQ2_XXS", 256, 66, false}},
      {17, {"IQ2_XS", 256, 74, false}},  {18, {"IQ3_XXS", 256, 98, false}}, {19, {"IQ1_S", 256, 50, false}},
      {20, {"IQ4_NL", 32, 18, false}},   {21, {"IQ3_S", 256, 110, false}},  {22, {"IQ2_S", 256, 82, false}},
      {23, {"IQ4_XS", 256, 136, false}}, {24, {"I8", 1, 1, false}},         {25, {"I16", 1, 2, false}},
      {26, {"I32", 1, 4, false}},        {27, {"I64", 1, 8, false}},        {28, {"F64", 1, 8, false}},
      {29, {"IQ1_M", 256, 56, false}},   {30, {"BF16", 1, 2, true}},        {34, {"TQ1_0", 256, 54, false}},
      {35, {"TQ2_0", 256, 66, false}},   {39, {"MXFP4", 32, 17, false}},
  };
  return k;
}

// Fixed byte size of a scalar metadata type; 0 for STRING/ARRAY; -1 for an unknown type.
int scalar_size(uint32_t t) {
  switch (ValueType(t)) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::BOOL:
      return 1;
    case ValueType::U16:
    case ValueType::I16:
      return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32:
      return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
      return 8;
    case ValueType::STRING:
    case ValueType::ARRAY:
      return 0;
  }
  return -1;
}

const char* value_type_name(uint32_t t) {
  static const char* names[] = {"uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
                                "bool",  "string", "array",  "uint64", "int64",  "float64"};
  return t < 13 ? names[t] : "unknown";
}

// Little-endian reads from a bounded buffer; running past the end is an Error.
struct Cursor {
  const uint8_t* p;
  size_t size, pos = 0;
  const std::string& name;
  [[noreturn]] void eof(const char* what, uint64_t need) const {
    fail("gguf: ", name, ": truncated: ", what, " needs ", need, " bytes at offset ", pos, " but the file has ",
         size - pos, " left");
  }
  uint64_t left() const { return size - pos; }
  void need(uint64_t n, const char* what) const {
    if (n > left()) eof(what, n);
  }
  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(p + pos), size_t(n));
    pos += size_t(n);
    return s;
  }
  void skip(uint64_t n, const char* what) {
    need(n, what);
    pos += size_t(n);
  }
};

}  // namespace

const TypeTraits* type_traits(uint32_t type) {
  auto it = traits_table().find(type);
  return it == traits_table().end() ? nullptr : &it->second;
}

std::string type_name(uint32_t type) {
  const TypeTraits* t = type_traits(type);
  return t ? std::string(t->name) : "type " + std::to_string(type);
}

Shape TensorInfo::shape() const { return Shape(ne.rbegin(), ne.rend()); }

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;  // checked against overflow when the file was read
  return n;
}

File::File(const std::string& path) : name_(path) {
  void* p = nullptr;
  {
    RegularFile file(path, "gguf: ");  // a FIFO or directory is an error, not a hang
    size_ = size_t(file.size());
    if (size_ == 0) fail("gguf: ", path, ": file is empty");
    p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.fd(), 0);
  }
  if (p == MAP_FAILED) fail("gguf: ", path, ": mmap failed (", std::strerror(errno), ")");
  const size_t sz = size_;
  owner_ = std::shared_ptr<const void>(p, [sz](const void* q) { munmap(const_cast<void*>(q), sz); });
  base_ = static_cast<const uint8_t*>(p);
  parse();
}

File::File(std::shared_ptr<const void> owner, const uint8_t* data, size_t size, std::string name)
    : name_(std::move(name)), owner_(std::move(owner)), base_(data), size_(size) {
  parse();
}

void File::parse() {
  auto bad = [&](const auto&... a) { fail("gguf: ", name_, ": ", a...); };
  Cursor c{base_, size_, 0, name_};
  if (size_ < 4 || std::memcmp(base_, "GGUF", 4) != 0) bad("not a GGUF file (no 'GGUF' magic at the start)");
  c.pos = 4;
  version_ = c.read<uint32_t>("the version");
  if (version_ == 0x02000000u || version_ == 0x03000000u) bad("big-endian GGUF files are not supported");
  if (version_ == 1) bad("GGUF version 1 is not supported (only versions 2 and 3)");
  if (version_ != 2 && version_ != 3) bad("unknown GGUF version ", version_, " (only versions 2 and 3)");
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the metadata count");
  // Each key/value takes at least 8 (key length) + 1 (key) + 4 (type) + 1 (value) bytes and each
  // tensor info at least 8 + 1 + 4 (n_dims) + 8 (one dimension) + 4 (type) + 8 (offset): a count
  // the rest of the file cannot hold is rejected before anything is sized by it.
  if (n_kv > c.left() / 14) bad("metadata count ", n_kv, " cannot fit in the ", c.left(), " bytes left");
  if (n_tensors > c.left() / 33) bad("tensor count ", n_tensors, " cannot fit in the ", c.left(), " bytes left");

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.str("a metadata key");
    if (key.empty()) bad("metadata key #", k, " is empty");
    if (kv_.count(key)) bad("duplicate metadata key '", key, "'");
    Value v;
    const uint32_t t = c.read<uint32_t>("a metadata type");
    if (scalar_size(t) < 0) bad("metadata '", key, "' has unknown type ", t);
    v.type = ValueType(t);
    auto scalar = [&](Value& out, uint32_t st) {
      switch (ValueType(st)) {
        case ValueType::U8:
          out.u = c.read<uint8_t>("a uint8 value");
          break;
        case ValueType::I8:
          out.i = c.read<int8_t>("an int8 value");
          break;
        case ValueType::U16:
          out.u = c.read<uint16_t>("a uint16 value");
          break;
        case ValueType::I16:
          out.i = c.read<int16_t>("an int16 value");
          break;
        case ValueType::U32:
          out.u = c.read<uint32_t>("a uint32 value");
          break;
        case ValueType::I32:
          out.i = c.read<int32_t>("an int32 value");
          break;
        case ValueType::U64:
          out.u = c.read<uint64_t>("a uint64 value");
          break;
        case ValueType::I64:
          out.i = c.read<int64_t>("an int64 value");
          break;
        case ValueType::F32:
          out.f = c.read<float>("a float32 value");
          break;
        case ValueType::F64:
          out.f = c.read<double>("a float64 value");
          break;
        case ValueType::BOOL: {
          const uint8_t b = c.read<uint8_t>("a bool value");
          if (b > 1) bad("metadata '", key, "' has bool value ", int(b), " (must be 0 or 1)");
          out.u = b;
          break;
        }
        case ValueType::STRING:
          out.s = c.str("a string value");
          break;
        case ValueType::ARRAY:
          break;
      }
    };
    if (v.type == ValueType::ARRAY) {
      const uint32_t et = c.read<uint32_t>("an array element type");
      if (scalar_size(et) < 0) bad("metadata '", key, "' is an array of unknown type ", et);
      if (ValueType(et) == ValueType::ARRAY) bad("metadata '", key, "' is an array of arrays (not supported)");
      v.elem = ValueType(et);
      v.count = c.read<uint64_t>("an array length");
      const int es = scalar_size(et);
      if (es > 0) {
        if (v.count > c.left() / uint64_t(es))
          bad("metadata '", key, "' array of ", v.count, " ", value_type_name(et), " runs past the end of the file");
        v.array_offset = c.pos;
        c.skip(v.count * uint64_t(es), "array elements");
      } else {  // strings: each at least 8 bytes
        if (v.count > c.left() / 8)
          bad("metadata '", key, "' array of ", v.count, " strings runs past the end of the file");
        v.strings.reserve(size_t(v.count));
        for (uint64_t i = 0; i < v.count; ++i) v.strings.push_back(c.str("an array string"));
      }
    } else {
      scalar(v, t);
    }
    kv_.emplace(std::move(key), std::move(v));
  }

  if (auto it = kv_.find("general.alignment"); it != kv_.end()) {
    const Value& a = it->second;
    if (a.type != ValueType::U32)
      bad("general.alignment has type ", value_type_name(uint32_t(a.type)), " (must be uint32)");
    if (a.u == 0 || (a.u & (a.u - 1)) != 0 || a.u > kMaxAlignment)
      bad("general.alignment ", a.u, " is not a power of two between 1 and ", kMaxAlignment);
    alignment_ = a.u;
  }

  tensors_.reserve(size_t(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo ti;
    ti.name = c.str("a tensor name");
    if (ti.name.empty()) bad("tensor #", k, " has an empty name");
    if (index_.count(ti.name)) bad("duplicate tensor name '", ti.name, "'");
    const uint32_t nd = c.read<uint32_t>("a tensor's dimension count");
    if (nd < 1 || nd > 4) bad("tensor '", ti.name, "' has ", nd, " dimensions (1 to 4 are allowed)");
    unsigned __int128 numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const int64_t x = c.read<int64_t>("a tensor dimension");
      if (x < 0) bad("tensor '", ti.name, "' has negative dimension ", x);
      ti.ne.push_back(x);
      numel *= uint64_t(x);
      if (numel > kInt64Max) bad("tensor '", ti.name, "' has more than 2^63 elements");
    }
    ti.type = c.read<uint32_t>("a tensor type");
    const TypeTraits* tt = type_traits(ti.type);
    if (!tt) bad("tensor '", ti.name, "' has unknown ggml type ", ti.type);
    if (ti.ne[0] % tt->block != 0)
      bad("tensor '", ti.name, "' has row length ", ti.ne[0], ", not a multiple of the ", tt->name, " block size ",
          tt->block);
    const unsigned __int128 nbytes = numel / unsigned(tt->block) * unsigned(tt->bytes);
    if (nbytes > kInt64Max) bad("tensor '", ti.name, "' is too large (", tt->name, ")");
    ti.nbytes = uint64_t(nbytes);
    ti.offset = c.read<uint64_t>("a tensor offset");
    if (ti.offset % alignment_ != 0)
      bad("tensor '", ti.name, "' offset ", ti.offset, " is not a multiple of the alignment ", alignment_);
    index_.emplace(ti.name, tensors_.size());
    tensors_.push_back(std::move(ti));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t end = c.pos;
  const unsigned __int128 start = ((unsigned __int128)end + alignment_ - 1) / alignment_ * alignment_;
  if (tensors_.empty()) {
    data_offset_ = uint64_t(std::min<unsigned __int128>(start, size_));
    return;
  }
  if (start > size_)
    bad("data section would start at ", uint64_t(start), ", past the end of the ", size_, "-byte file");
  data_offset_ = uint64_t(start);
  const uint64_t data_len = size_ - data_offset_;
  std::vector<const TensorInfo*> order;
  for (const TensorInfo& t : tensors_) {
    if (t.offset > data_len || t.nbytes > data_len - t.offset)
      bad("tensor '", t.name, "' (", t.nbytes, " bytes at data offset ", t.offset, ") runs past the end of the ",
          data_len, "-byte data section");
    order.push_back(&t);
  }
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->nbytes < b->nbytes;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    const TensorInfo& a = *order[i - 1];
    const TensorInfo& b = *order[i];
    if (b.offset < a.offset + a.nbytes)
      bad("tensor '", b.name, "' at data offset ", b.offset, " overlaps tensor '", a.name, "' (", a.offset, " .. ",
          a.offset + a.nbytes, ")");
  }
}

const TensorInfo* File::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<int64_t> File::int_array(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) fail("gguf: ", name_, ": no metadata '", key, "'");
  const Value& v = it->second;
  if (v.type != ValueType::ARRAY || v.elem == ValueType::STRING || v.elem == ValueType::F32 || v.elem == ValueType::F64)
    fail("gguf: ", name_, ": metadata '", key, "' is not an array of integers");
  const int es = scalar_size(uint32_t(v.elem));
  std::vector<int64_t> out(size_t(v.count));  // count * es was checked against the file when it was read
  const uint8_t* p = base_ + v.array_offset;
  for (uint64_t i = 0; i < v.count; ++i, p += es) {
    switch (v.elem) {
      case ValueType::U8:
      case ValueType::BOOL:
        out[i] = *p;
        break;
      case ValueType::I8:
        out[i] = int8_t(*p);
        break;
      case ValueType::U16: {
        uint16_t x;
        std::memcpy(&x, p, 2);
        out[i] = x;
        break;
      }
      case ValueType::I16: {
        int16_t x;
        std::memcpy(&x, p, 2);
        out[i] = x;
        break;
      }
      case ValueType::U32: {
        uint32_t x;
        std::memcpy(&x, p, 4);
        out[i] = x;
        break;
      }
      case ValueType::I32: {
        int32_t x;
        std::memcpy(&x, p, 4);
        out[i] = x;
        break;
      }
      case ValueType::U64: {
        uint64_t x;
        std::memcpy(&x, p, 8);
        if (x > uint64_t(INT64_MAX))
          fail("gguf: ", name_, ": metadata '", key, "' element ", i, " = ", x, " is out of range");
        out[i] = int64_t(x);
        break;
      }
      case ValueType::I64: {
        int64_t x;
        std::memcpy(&x, p, 8);
        out[i] = x;
        break;
      }
      default:
        break;
    }
  }
  return out;
}

Tensor File::dequantize(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail("gguf: ", name_, ": no tensor named '", name, "'");
  const TypeTraits* tt = type_traits(t->type);
  if (!tt->dequantize)
    fail("gguf: ", name_, ": tensor '", name, "' has type ", tt->name,
         " (supported: F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q6_K, Q5_K, Q4_K, Q3_K, Q2_K)");
  Tensor out = Tensor::empty(DType::F32, t->shape());
  dequantize_rows(t->type, data(*t), out.f32(), t->numel());
  return out;
}

}  // namespace zimage::gguf
