#include "core/safetensors.h"

#include "core/file_io.h"
#include "core/fp8.h"
#include "core/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

namespace zimage {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Element sizes of every dtype the safetensors format defines.
int safetensors_dtype_bits(const std::string& d) {
  static const std::map<std::string, int> k = {
      {"BOOL", 8}, {"U8", 8},   {"I8", 8},    {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"I16", 16},
      {"U16", 16}, {"F16", 16}, {"BF16", 16}, {"I32", 32},    {"U32", 32},    {"F32", 32},    {"F64", 64},
      {"I64", 64}, {"U64", 64}, {"F4", 4},    {"F6_E2M3", 6}, {"F6_E3M2", 6}};
  auto it = k.find(d);
  return it == k.end() ? 0 : it->second;
}

bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

bool float_dtype(const std::string& d, DType* out) {
  if (d == "F32")
    *out = DType::F32;
  else if (d == "BF16")
    *out = DType::BF16;
  else if (d == "F16")
    *out = DType::F16;
  else
    return false;
  return true;
}

}  // namespace

SafeTensorsFile::SafeTensorsFile(const std::string& path) : path_(path) {
  auto bad = [&](const auto&... a) { fail("safetensors: ", path, ": ", a...); };
  void* p = nullptr;
  {
    RegularFile file(path, "safetensors: ");  // a FIFO or directory is an error, not a hang
    size_ = size_t(file.size());
    if (size_ < 8) bad("file is ", size_, " bytes, shorter than the 8-byte header length");
    p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.fd(), 0);
  }
  if (p == MAP_FAILED) bad("mmap failed (", std::strerror(errno), ")");
  size_t sz = size_;
  map_ = std::shared_ptr<const void>(p, [sz](const void* q) { munmap(const_cast<void*>(q), sz); });
  const unsigned char* b = static_cast<const unsigned char*>(p);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | b[i];
  if (n > kMaxHeader) bad("header length ", n, " exceeds the ", kMaxHeader, "-byte limit");
  if (n > size_ - 8) bad("header length ", n, " runs past the end of the ", size_, "-byte file");
  std::string_view text(reinterpret_cast<const char*>(b + 8), size_t(n));

  // Parse, rejecting duplicate keys at the top level (nlohmann would silently keep the last).
  std::set<std::string> seen;
  std::string dup;
  json header = parse_json_text(text, path + ": header", "safetensors: ", [&](int depth, const std::string& k) {
    if (depth == 1 && !seen.insert(k).second && dup.empty()) dup = k;
  });
  if (!dup.empty()) bad("duplicate tensor name '", dup, "'");
  if (!header.is_object()) bad("header is not a JSON object");

  const uint64_t data_len = size_ - 8 - n;
  data_ = reinterpret_cast<const char*>(b + 8 + n);
  std::vector<std::pair<std::string, TensorInfo*>> order;
  for (auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) bad("__metadata__ is not an object");
      for (auto& [k, mv] : v.items()) {
        if (!mv.is_string()) bad("__metadata__ value for '", k, "' is not a string");
        metadata_[k] = mv.get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) bad("entry for tensor '", name, "' is not an object");
    TensorInfo ti;
    if (!v.contains("dtype") || !v["dtype"].is_string()) bad("tensor '", name, "' has no dtype string");
    ti.dtype = v["dtype"].get<std::string>();
    int bits = safetensors_dtype_bits(ti.dtype);
    if (bits == 0) bad("tensor '", name, "' has unknown dtype '", ti.dtype, "'");
    if (!v.contains("shape") || !v["shape"].is_array()) bad("tensor '", name, "' has no shape array");
    for (auto& d : v["shape"]) {
      if (!d.is_number_unsigned())
        bad("tensor '", name, "' has a shape entry that is not a non-negative integer: ", d.dump());
      uint64_t x = d.get<uint64_t>();
      if (x > uint64_t(std::numeric_limits<int64_t>::max())) bad("tensor '", name, "' dimension ", x, " too large");
      ti.shape.push_back(int64_t(x));
    }
    if (!v.contains("data_offsets")) bad("tensor '", name, "' has no data_offsets");
    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2)
      bad("tensor '", name, "' has data_offsets ", json_excerpt(off), ", expected a [begin, end] pair of byte offsets");
    for (size_t i = 0; i < 2; ++i)
      if (!off[i].is_number_unsigned())
        bad("tensor '", name, "' has data_offsets ", json_excerpt(off), ": ", i == 0 ? "begin " : "end ",
            json_excerpt(off[i]), " is not a non-negative integer");
    ti.begin = off[0].get<uint64_t>();
    ti.end = off[1].get<uint64_t>();
    if (ti.end < ti.begin) bad("tensor '", name, "' has data_offsets end ", ti.end, " before begin ", ti.begin);
    // shape x dtype size == byte length, with overflow checks
    unsigned __int128 nel = 1;
    for (auto d : ti.shape) {
      nel *= uint64_t(d);
      if (nel > (unsigned __int128)(std::numeric_limits<uint64_t>::max()))
        bad("tensor '", name, "' shape ", shape_str(ti.shape), " overflows");
    }
    unsigned __int128 nbits = nel * unsigned(bits);
    if (nbits % 8 != 0) bad("tensor '", name, "' has a size that is not a whole number of bytes");
    unsigned __int128 nbytes = nbits / 8;
    if (nbytes != (unsigned __int128)(ti.end - ti.begin))
      bad("tensor '", name, "' shape ", shape_str(ti.shape), " x ", ti.dtype, " needs ", uint64_t(nbytes),
          " bytes but data_offsets span ", ti.end - ti.begin);
    auto [it, ok] = tensors_.emplace(name, ti);
    order.emplace_back(name, &it->second);
  }
  std::sort(order.begin(), order.end(), [](auto& a, auto& c) {
    return a.second->begin != c.second->begin ? a.second->begin < c.second->begin : a.second->end < c.second->end;
  });
  uint64_t pos = 0;
  for (auto& [name, ti] : order) {
    if (ti->begin < pos)
      bad("tensor '", name, "' at offset ", ti->begin, " overlaps the previous tensor (ends at ", pos, ")");
    if (ti->begin > pos) bad("gap in the data section before tensor '", name, "' (", pos, " .. ", ti->begin, ")");
    pos = ti->end;
  }
  if (pos != data_len)
    bad("data section is ", data_len, " bytes but tensors cover ", pos,
        pos < data_len ? " (trailing bytes)" : " (past the end of the file)");
}

Tensor SafeTensorsFile::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("safetensors: ", path_, ": no tensor named '", name, "'");
  DType dt;
  if (!float_dtype(it->second.dtype, &dt))
    fail("safetensors: ", path_, ": tensor '", name, "' has dtype ", it->second.dtype,
         " (only F32, BF16 and F16 are supported)");
  return Tensor::view(dt, it->second.shape, data_ + it->second.begin, map_);
}

const uint8_t* SafeTensorsFile::bytes(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("safetensors: ", path_, ": no tensor named '", name, "'");
  return reinterpret_cast<const uint8_t*>(data_ + it->second.begin);
}

std::string quantized_type_name(uint32_t type) {
  return type == fp8::kE4M3Type ? std::string("F8_E4M3") : gguf::type_name(type);
}

void dequantize_row(const QuantizedTensor& q, int64_t row, float* dst) {
  const int64_t rows = q.shape.empty() ? 1 : q.shape[0];
  const int64_t k = rows ? shape_numel(q.shape) / rows : 0;
  ZI_ASSERT(row >= 0 && row < rows);
  const uint8_t* src = q.data + size_t(row) * (q.nbytes / size_t(rows));
  if (q.ggml_type != fp8::kE4M3Type) return gguf::dequantize_rows(q.ggml_type, src, dst, k);
  const float* s = q.scale.empty() ? nullptr : q.scale.size() == 1 ? q.scale.data() : q.scale.data() + row;
  fp8::e4m3_to_f32(src, dst, k, s);
}

// ---------------------------------------------------------------------------------------------

WeightStore WeightStore::open_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail("weights: folder '", dir, "' ", fs::exists(dir, ec) ? "is not a folder" : "does not exist");
  for (const char* stem : {"diffusion_pytorch_model", "model"}) {
    fs::path single = fs::path(dir) / (std::string(stem) + ".safetensors");
    fs::path index = fs::path(dir) / (std::string(stem) + ".safetensors.index.json");
    if (fs::exists(single)) return open_file(single.string());
    if (fs::exists(index)) return open_index(index.string());
  }
  fail("weights: no *.safetensors or *.safetensors.index.json in '", dir, "'");
}

namespace {
bool starts_with_gguf_magic(const std::string& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return false;  // SafeTensorsFile gives the error
  FILE* f = std::fopen(file.c_str(), "rb");
  if (!f) return false;
  char m[4] = {};
  const size_t n = std::fread(m, 1, 4, f);
  std::fclose(f);
  return n == 4 && std::memcmp(m, "GGUF", 4) == 0;
}
}  // namespace

WeightStore WeightStore::open_file(const std::string& file) {
  WeightStore w;
  const bool gguf_name = file.size() >= 5 && file.compare(file.size() - 5, 5, ".gguf") == 0;
  if (gguf_name || starts_with_gguf_magic(file)) {
    w.source_ = file;
    w.gguf_ = std::make_shared<gguf::File>(file);
    for (const gguf::TensorInfo& t : w.gguf_->tensors()) {
      TensorInfo ti;
      ti.dtype = gguf::type_name(t.type);
      ti.shape = t.shape();
      ti.begin = w.gguf_->data_offset() + t.offset;
      ti.end = ti.begin + t.nbytes;
      w.gguf_info_.emplace(t.name, ti);
      w.where_[t.name] = 0;
    }
    return w;
  }
  w.source_ = file;
  w.files_.push_back(std::make_shared<SafeTensorsFile>(file));
  for (auto& [name, ti] : w.files_[0]->tensors()) w.where_[name] = 0;
  w.attach_fp8_scales();
  return w;
}

namespace {
// In the Hugging Face cache, snapshot files are symlinks into the repository's blobs folder:
// <repo>/snapshots/<commit>/<component>/x -> ../../../blobs/<etag>. A shard may resolve there.
bool in_hub_blobs(const fs::path& component_root, const fs::path& real) {
  for (fs::path p = component_root; p.has_relative_path(); p = p.parent_path()) {
    if (p.parent_path().filename() != "snapshots") continue;
    const fs::path blobs = p.parent_path().parent_path() / "blobs";
    return real.parent_path() == blobs;
  }
  return false;
}
}  // namespace

WeightStore WeightStore::open_index(const std::string& index_json) {
  auto bad = [&](const auto&... a) { fail("weights: ", index_json, ": ", a...); };
  const json j = parse_json_file(index_json, "weights: ");
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) bad("has no 'weight_map' object");
  fs::path dir = fs::path(index_json).parent_path();
  std::error_code ec;
  fs::path root = fs::canonical(dir, ec);
  if (ec) bad("cannot resolve folder '", dir.string(), "'");
  WeightStore w;
  w.source_ = index_json;
  std::map<std::string, size_t> shard_idx;
  for (auto& [name, v] : j["weight_map"].items()) {
    if (!v.is_string()) bad("weight_map entry for '", name, "' is not a string");
    std::string shard = v.get<std::string>();
    fs::path sp(shard);
    if (shard.empty() || sp.is_absolute()) bad("shard path '", shard, "' for '", name, "' is absolute or empty");
    for (auto& part : sp)
      if (part == "..") bad("shard path '", shard, "' for '", name, "' leaves the component folder");
    auto it = shard_idx.find(shard);
    if (it == shard_idx.end()) {
      fs::path full = root / sp;
      if (!fs::exists(full)) bad("shard '", shard, "' (for '", name, "') is missing");
      fs::path real = fs::canonical(full, ec);
      if (ec) bad("cannot resolve shard '", shard, "'");
      auto rel = real.lexically_relative(root);
      if ((rel.empty() || *rel.begin() == "..") && !in_hub_blobs(root, real))
        bad("shard '", shard, "' resolves outside the component folder (", real.string(), ")");
      w.files_.push_back(std::make_shared<SafeTensorsFile>(real.string()));
      it = shard_idx.emplace(shard, w.files_.size() - 1).first;
    }
    if (!w.files_[it->second]->has(name)) bad("shard '", shard, "' does not contain '", name, "'");
    w.where_[name] = it->second;
  }
  w.attach_fp8_scales();
  return w;
}

// Scaled fp8 checkpoints: ComfyUI's `<layer>.scale_weight` (one value) and the `weight_scale`
// of diffusers' fp8r layout (one per row, [N]) / other per-tensor writers. Each scale is read now
// (a few floats), checked, and unlisted; activation scales (`scale_input`, `input_scale`) matter
// only to an fp8 GEMM and ComfyUI's `scaled_fp8` marker holds nothing: both are unlisted too.
void WeightStore::attach_fp8_scales() {
  auto bad = [&](const auto&... a) { fail("weights: ", source_, ": ", a...); };
  std::vector<std::string> stored;
  for (auto& [k, _] : where_) stored.push_back(k);
  for (const std::string& n : stored) {
    if (n == "scaled_fp8" || ends_with(n, ".scaled_fp8") || ends_with(n, ".scale_input") ||
        ends_with(n, ".input_scale")) {
      hidden_[n] = true;
      continue;
    }
    std::string base;
    for (const char* sfx : {".scale_weight", ".weight_scale"})
      if (ends_with(n, sfx)) base = n.substr(0, n.size() - std::strlen(sfx));
    if (base.empty()) continue;
    hidden_[n] = true;
    const std::string weight = base + ".weight";
    if (!where_.count(weight)) bad("fp8 scale '", n, "' has no weight '", weight, "'");
    const TensorInfo& wi = stored_info(weight);
    if (wi.dtype != "F8_E4M3")
      bad("scale '", n, "' belongs to '", weight, "', which is ", wi.dtype,
          ", not F8_E4M3 (only fp8 weights take a scale)");
    if (fp8_scale_.count(weight))
      bad("'", weight, "' has two scales ('", base, ".scale_weight' and '", base, ".weight_scale')");
    const TensorInfo& si = stored_info(n);
    DType dt;
    if (!float_dtype(si.dtype, &dt)) bad("fp8 scale '", n, "' has dtype ", si.dtype, ", expected F32, BF16 or F16");
    const int64_t rows = wi.shape.empty() ? 1 : wi.shape[0];
    const int64_t count = shape_numel(si.shape);
    const bool per_tensor = count == 1 && si.shape.size() <= 2;
    const bool per_row = (si.shape.size() == 1 || (si.shape.size() == 2 && si.shape[1] == 1)) && si.shape[0] == rows;
    if (!per_tensor && !per_row)
      bad("fp8 scale '", n, "' has shape ", shape_str(si.shape), "; for '", weight, "' of shape ", shape_str(wi.shape),
          " it must hold one value (per tensor: [] or [1]) or ", rows, " (per row: [", rows, "] or [", rows, ", 1])");
    std::vector<float> v = files_[where_.at(n)]->get(n).to(DType::F32).to_vector();
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i])) bad("fp8 scale '", n, "' holds a non-finite value (", v[i], " at index ", i, ")");
    fp8_scale_[weight] = std::move(v);
  }
}

std::vector<float> WeightStore::stored_scale(const std::string& stored) const {
  auto it = fp8_scale_.find(stored);
  return it == fp8_scale_.end() ? std::vector<float>{} : it->second;
}

bool WeightStore::has(const std::string& name) const {
  return views_.count(name) != 0 || (where_.count(name) != 0 && hidden_.count(name) == 0);
}

void WeightStore::hide(const std::string& name) { hidden_[name] = true; }

void WeightStore::alias(const std::string& from, const std::string& to, int64_t row0, int64_t rows) {
  if (!where_.count(from)) fail("weights: ", source_, ": missing tensor '", from, "'");
  View v{from, row0, rows, stored_info(from)};
  if (rows >= 0) {
    if (v.info.shape.empty() || row0 < 0 || row0 + rows > v.info.shape[0])
      fail("weights: ", source_, ": tensor '", from, "' of shape ", shape_str(v.info.shape), " has no rows ", row0,
           " .. ", row0 + rows, " (for '", to, "')");
    const uint64_t row_bytes = v.info.shape[0] ? (v.info.end - v.info.begin) / uint64_t(v.info.shape[0]) : 0;
    v.info.begin += uint64_t(row0) * row_bytes;
    v.info.end = v.info.begin + uint64_t(rows) * row_bytes;
    v.info.shape[0] = rows;
  }
  if (from != to) hidden_[from] = true;
  views_[to] = std::move(v);
}

void WeightStore::alias_reshaped(const std::string& from, const std::string& to, const Shape& shape) {
  if (!where_.count(from)) fail("weights: ", source_, ": missing tensor '", from, "'");
  View v{from, 0, -1, stored_info(from), true};
  if (shape_numel(shape) != shape_numel(v.info.shape))
    fail("weights: ", source_, ": tensor '", from, "' of shape ", shape_str(v.info.shape), " cannot be viewed as ",
         shape_str(shape), " (for '", to, "')");
  v.info.shape = shape;
  if (from != to) hidden_[from] = true;
  views_[to] = std::move(v);
}

std::vector<std::string> WeightStore::names() const {
  std::set<std::string> v;
  for (auto& [k, _] : where_)
    if (!hidden_.count(k)) v.insert(k);
  for (auto& [k, _] : views_) v.insert(k);
  return {v.begin(), v.end()};
}

const TensorInfo& WeightStore::stored_info(const std::string& stored) const {
  if (gguf_) return gguf_info_.at(stored);
  return files_[where_.at(stored)]->tensors().at(stored);
}

const TensorInfo& WeightStore::info(const std::string& name) const {
  if (auto v = views_.find(name); v != views_.end()) return v->second.info;
  if (!has(name)) fail("weights: ", source_, ": missing tensor '", name, "'");
  return stored_info(name);
}

bool WeightStore::is_fp8(const std::string& name) const { return !gguf_ && has(name) && info(name).dtype == "F8_E4M3"; }

bool WeightStore::is_quantized(const std::string& name) const {
  if (is_fp8(name)) return true;
  if (!gguf_ || !has(name)) return false;
  if (auto v = views_.find(name); v != views_.end() && v->second.reshaped) return false;  // get() names the type
  DType d;
  return !float_dtype(info(name).dtype, &d);
}

QuantizedTensor WeightStore::quantized(const std::string& name, const Shape& expected) const {
  const TensorInfo& ti = info(name);
  if (!is_quantized(name)) fail("weights: ", source_, ": tensor '", name, "' is not quantized (", ti.dtype, ")");
  if (ti.shape != expected)
    fail("weights: ", source_, ": tensor '", name, "' has shape ", shape_str(ti.shape), ", expected ",
         shape_str(expected));
  auto v = views_.find(name);
  QuantizedTensor q = stored_quantized(name, v == views_.end() ? name : v->second.from);
  if (v != views_.end() && v->second.rows >= 0) {
    q.data += v->second.info.begin - stored_info(v->second.from).begin;
    q.nbytes = size_t(v->second.info.end - v->second.info.begin);
    q.shape = ti.shape;
    if (q.scale.size() > 1)  // per-row scale: the view's rows
      q.scale = std::vector<float>(q.scale.begin() + v->second.row0, q.scale.begin() + v->second.row0 + v->second.rows);
  }
  return q;
}

QuantizedTensor WeightStore::stored_quantized(const std::string& name, const std::string& stored) const {
  if (!gguf_) {  // F8_E4M3
    const TensorInfo& ti = stored_info(stored);
    const SafeTensorsFile& f = *files_[where_.at(stored)];
    return QuantizedTensor{fp8::kE4M3Type,      ti.shape, f.bytes(stored), size_t(ti.end - ti.begin), f.owner(),
                           stored_scale(stored)};
  }
  const gguf::TensorInfo* g = gguf_->find(stored);
  const gguf::TypeTraits* tt = gguf::type_traits(g->type);
  if (!tt->dequantize)
    fail("weights: ", source_, ": tensor '", name, "' has ggml type ", tt->name,
         " (supported: F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q6_K, Q5_K, Q4_K, Q3_K, Q2_K)");
  return QuantizedTensor{g->type, g->shape(), gguf_->data(*g), size_t(g->nbytes), gguf_->owner(), {}};
}

Tensor WeightStore::get(const std::string& name) const {
  if (auto v = views_.find(name); v != views_.end()) {
    Tensor t = stored_get(name, v->second.from);
    if (v->second.reshaped) return t.reshape(v->second.info.shape);
    return v->second.rows >= 0 ? t.slice0(v->second.row0, v->second.row0 + v->second.rows) : t;
  }
  if (!has(name)) fail("weights: ", source_, ": missing tensor '", name, "'");
  return stored_get(name, name);
}

Tensor WeightStore::stored_get(const std::string& name, const std::string& stored) const {
  if (gguf_) {
    const TensorInfo& ti = gguf_info_.at(stored);
    DType dt;
    if (!float_dtype(ti.dtype, &dt))
      fail("weights: ", source_, ": tensor '", name, "' is stored as ", ti.dtype,
           " (quantized); only linear layers take quantized weights");
    const gguf::TensorInfo* g = gguf_->find(stored);
    const uint8_t* p = gguf_->data(*g);
    if (reinterpret_cast<uintptr_t>(p) % dtype_size(dt) == 0) return Tensor::view(dt, ti.shape, p, gguf_->owner());
    Tensor t = Tensor::empty(dt, ti.shape);  // an unaligned tensor (alignment < 4) is copied
    std::memcpy(t.raw(), p, size_t(g->nbytes));
    return t;
  }
  const TensorInfo& ti = stored_info(stored);
  if (ti.dtype == "F8_E4M3") {  // upcast at load (times its scale), float32 of its own
    QuantizedTensor q = stored_quantized(name, stored);
    Tensor t = Tensor::empty(DType::F32, ti.shape);
    const int64_t rows = ti.shape.empty() ? 1 : ti.shape[0];
    const int64_t k = rows ? shape_numel(ti.shape) / rows : 0;
    for (int64_t r = 0; r < rows; ++r) dequantize_row(q, r, t.f32() + r * k);
    return t;
  }
  return files_[where_.at(stored)]->get(stored);
}

Tensor WeightStore::get(const std::string& name, const Shape& expected) const {
  Tensor t = get(name);
  if (t.shape() != expected)
    fail("weights: ", source_, ": tensor '", name, "' has shape ", shape_str(t.shape()), ", expected ",
         shape_str(expected));
  return t;
}

void WeightStore::check(const std::vector<TensorSpec>& specs) const {
  std::vector<std::string> missing;
  for (const TensorSpec& s : specs)
    if (!has(s.name)) missing.push_back(s.name);
  if (missing.size() == 1) fail("weights: ", source_, ": missing tensor '", missing[0], "'");
  if (!missing.empty()) {
    std::string first;
    for (size_t i = 0; i < std::min<size_t>(missing.size(), 5); ++i) first += (i ? ", " : "") + missing[i];
    fail("weights: ", source_, ": missing tensor '", missing[0], "' (", missing.size(), " of the ", specs.size(),
         " expected tensors are missing: ", first, missing.size() > 5 ? ", ..." : "", ")");
  }
  for (const TensorSpec& s : specs) {
    const TensorInfo& ti = info(s.name);
    auto v = views_.find(s.name);
    const std::string& stored = v == views_.end() ? s.name : v->second.from;
    DType dt;
    if (gguf_) {
      const gguf::TensorInfo* g = gguf_->find(stored);
      if (!gguf::type_traits(g->type)->dequantize)
        fail("weights: ", source_, ": tensor '", s.name, "' has ggml type ", ti.dtype,
             " (supported: F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q6_K, Q5_K, Q4_K, Q3_K, Q2_K)");
    } else if (!float_dtype(ti.dtype, &dt) && ti.dtype != "F8_E4M3") {
      fail("safetensors: ", files_[where_.at(stored)]->path(), ": tensor '", s.name, "' has dtype ", ti.dtype,
           " (only F32, BF16, F16 and F8_E4M3 are supported)");
    }
    if (ti.shape != s.shape)
      fail("weights: ", source_, ": tensor '", s.name, "' has shape ", shape_str(ti.shape), ", expected ",
           shape_str(s.shape));
  }
}

DType WeightStore::stored_dtype() const {
  for (auto& [name, idx] : where_) {
    DType d;
    if (float_dtype(stored_info(name).dtype, &d)) return d;
  }
  return DType::F32;
}

std::shared_ptr<const void> WeightStore::mapping(const std::string& name) const {
  auto v = views_.find(name);
  const std::string& stored = v == views_.end() ? name : v->second.from;
  if (gguf_) return gguf_->owner();
  return files_[where_.at(stored)]->mapping();
}

size_t WeightStore::bytes_on_disk() const {
  size_t s = gguf_ ? gguf_->file_size() : 0;
  for (auto& f : files_) s += f->file_size();
  return s;
}

int64_t WeightStore::num_params() const {
  int64_t n = 0;
  for (const std::string& name : names()) n += shape_numel(info(name).shape);
  return n;
}

}  // namespace zimage
