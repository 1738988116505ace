#include "weights/lora.h"

#include <openssl/evp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "ops/ops.h"

namespace zimage::weights {

std::string lora_stem(const std::string& path) { return std::filesystem::path(path).stem().string(); }

LoraSpec parse_lora_arg(const std::string& arg) {
  LoraSpec s{arg, 1.0, ""};
  const size_t c = arg.rfind(':');
  if (c != std::string::npos && c + 1 < arg.size()) {
    const std::string tail = arg.substr(c + 1);
    char* end = nullptr;
    const double v = std::strtod(tail.c_str(), &end);
    if (end && *end == 0) {
      if (!std::isfinite(v)) fail("[lora] '", arg, "': scale '", tail, "' is not a finite number");
      s.path = arg.substr(0, c);
      s.scale = v;
    }
  }
  if (s.path.empty()) fail("[lora] '", arg, "': no file name (expected FILE or FILE:SCALE)");
  return s;
}

namespace {

bool starts(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t i = 0; (i = s.find(from, i)) != std::string::npos; i += to.size()) s.replace(i, from.size(), to);
}

// kohya "layers_0_attention_to_q" -> "layers.0.attention.to_q" (diffusers' convert_key: "_" becomes
// "." except inside to_q/to_k/to_v/to_out/feed_forward; then its module-name fix-ups).
std::string kohya_module(const std::string& m) {
  std::vector<std::string> parts;
  size_t b = 0;
  for (size_t i = 0; i <= m.size(); ++i)
    if (i == m.size() || m[i] == '_') parts.push_back(m.substr(b, i - b)), b = i + 1;
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string p = parts[i];
    if (i + 1 < parts.size() &&
        ((p == "to" && (parts[i + 1] == "q" || parts[i + 1] == "k" || parts[i + 1] == "v" || parts[i + 1] == "out")) ||
         (p == "feed" && parts[i + 1] == "forward")))
      p += "_" + parts[++i];
    out += (out.empty() ? "" : ".") + p;
  }
  return out;
}

std::string fixups(std::string k) {
  for (auto [d, u] : {std::pair{"context.refiner.", "context_refiner."},
                      {"noise.refiner.", "noise_refiner."},
                      {"adaLN.modulation.", "adaLN_modulation."},
                      {"all.final.layer.", "all_final_layer."},
                      {"all.x.embedder.", "all_x_embedder."},
                      {"cap.embedder.", "cap_embedder."},
                      {"t.embedder.", "t_embedder."}})
    replace_all(k, d, u);
  return k;
}

struct Parts {
  Tensor a, b;
  DType a_dtype = DType::F32, b_dtype = DType::F32;  // as stored
  bool has_alpha = false;
  double alpha = 0;
};

// t * s as torch computes a `dtype` tensor times a Python float (rounded to the dtype).
Tensor scaled(const Tensor& t, double s, DType dtype) {
  Tensor o = t.clone();
  float* p = o.f32();
  const float sf = float(s);
  for (int64_t i = 0; i < o.numel(); ++i) p[i] = p[i] * sf;
  if (dtype == DType::F32 || s == 1.0) return o;
  return o.to(dtype).to(DType::F32).clone();
}

bool finite_all(const Tensor& t) {
  const float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

}  // namespace

LoraSet LoraSet::load(const std::vector<LoraSpec>& files, const std::vector<TensorSpec>& specs) {
  std::map<std::string, Shape> linear;  // module -> [out, in]
  for (auto& s : specs)
    if (s.shape.size() == 2 && ends(s.name, ".weight")) linear[s.name.substr(0, s.name.size() - 7)] = s.shape;
  LoraSet set;
  for (const auto& f : files) {
    if (!std::isfinite(f.scale)) fail("[lora] ", f.path, ": scale ", f.scale, " is not finite");
    SafeTensorsFile file = with_component("lora", [&] { return SafeTensorsFile(f.path); });
    std::map<std::string, Parts> mods;
    std::vector<std::string> unknown;
    for (const auto& [key, info] : file.tensors()) {
      std::string k = key;
      bool kohya = false;
      if (starts(k, "transformer."))
        k = k.substr(12);
      else if (starts(k, "diffusion_model."))
        k = k.substr(16);
      else if (starts(k, "lora_unet_"))
        k = k.substr(10), kohya = true;
      replace_all(k, "default.", "");
      std::string role;
      for (auto [suf, r] : {std::pair{".lora_A.weight", "A"},
                            {".lora_B.weight", "B"},
                            {".lora_down.weight", "A"},
                            {".lora_up.weight", "B"},
                            {".alpha", "alpha"}})
        if (ends(k, suf)) {
          role = r;
          k = k.substr(0, k.size() - std::string(suf).size());
          break;
        }
      if (role.empty()) {
        unknown.push_back(key);
        continue;
      }
      if (kohya) k = kohya_module(k);
      k = fixups(k);
      if (ends(k, ".attention.out")) k = k.substr(0, k.size() - 4) + ".to_out.0";
      const bool qkv = ends(k, ".attention.qkv");
      if (!qkv && !linear.count(k)) {
        unknown.push_back(key);
        continue;
      }
      const Tensor stored = file.get(key);
      Tensor t = stored.to(DType::F32).clone();
      if (!finite_all(t)) fail("[lora] ", f.path, ": ", key, " holds a NaN or infinite value");
      Parts& p = mods[k];
      if (role == "A")
        p.a = t, p.a_dtype = stored.dtype();
      else if (role == "B")
        p.b = t, p.b_dtype = stored.dtype();
      else {
        if (t.numel() != 1) fail("[lora] ", f.path, ": ", key, " has ", t.numel(), " values (an alpha is one number)");
        p.has_alpha = true;
        p.alpha = t.f32()[0];
      }
    }
    if (!unknown.empty()) {
      std::string list;
      for (size_t i = 0; i < unknown.size() && i < 5; ++i) list += (i ? ", " : "") + unknown[i];
      fail("[lora] ", f.path, ": ", unknown.size(), " key", unknown.size() == 1 ? "" : "s",
           " match no transformer module: ", list, unknown.size() > 5 ? ", ..." : "");
    }
    if (mods.empty()) fail("[lora] ", f.path, " holds no LoRA weights");
    for (auto& [m, p] : mods) {
      if (!p.a.defined() || p.a.numel() == 0 || !p.b.defined() || p.b.numel() == 0)
        fail("[lora] ", f.path, ": module ", m, " has ", p.a.numel() ? "lora_A without lora_B" : "no lora_A");
      if (p.a.ndim() != 2 || p.b.ndim() != 2)
        fail("[lora] ", f.path, ": module ", m, ": lora_A and lora_B must be matrices (shapes ", shape_str(p.a.shape()),
             ", ", shape_str(p.b.shape()), ")");
      const int64_t r = p.a.dim(0);
      std::vector<std::pair<std::string, Tensor>> targets;
      if (ends(m, ".attention.qkv")) {  // fused qkv: lora_A shared, lora_B split in three (diffusers)
        const std::string blk = m.substr(0, m.size() - 3);
        if (p.b.dim(0) % 3 != 0)
          fail("[lora] ", f.path, ": module ", m, ": fused qkv lora_B has ", p.b.dim(0), " rows (not a multiple of 3)");
        const int64_t n = p.b.dim(0) / 3;
        const char* names[] = {"to_q", "to_k", "to_v"};
        for (int i = 0; i < 3; ++i) {
          if (!linear.count(blk + names[i])) fail("[lora] ", f.path, ": ", m, " matches no transformer module");
          targets.push_back({blk + names[i], p.b.slice0(i * n, (i + 1) * n).clone()});
        }
      } else {
        targets.push_back({m, p.b});
      }
      if (p.has_alpha && !std::isfinite(p.alpha))
        fail("[lora] ", f.path, ": module ", m, ": alpha ", p.alpha, " is not finite");
      // diffusers' get_alpha_scales: alpha / rank split between lora_A and lora_B, each multiplied
      // in the file's dtype.
      Tensor a = p.a;
      if (p.has_alpha) {
        double down = p.alpha / double(r), up = 1.0;
        while (down * 2 < up) down *= 2, up /= 2;
        a = scaled(p.a, down, p.a_dtype);
        for (auto& t : targets) t.second = scaled(t.second, up, p.b_dtype);
      }
      for (auto& [name, b] : targets) {
        const Shape& w = linear.at(name);
        if (a.dim(1) != w[1] || b.dim(0) != w[0] || b.dim(1) != r)
          fail("[lora] ", f.path, ": module ", name, ": lora_A ", shape_str(a.shape()), " and lora_B ",
               shape_str(b.shape()), " do not fit the weight ", shape_str(w), " (expected [rank, ", w[1], "] and [",
               w[0], ", rank])");
        if (r > std::min(w[0], w[1]))
          fail("[lora] ", f.path, ": module ", name, ": rank ", r, " is larger than the layer ", shape_str(w));
        set.deltas_[name + ".weight"].push_back({a, b, f.scale, f.name.empty() ? lora_stem(f.path) : f.name});
      }
    }
  }
  return set;
}

const std::vector<LoraDelta>* LoraSet::find(const std::string& name) const {
  auto it = deltas_.find(name);
  return it == deltas_.end() ? nullptr : &it->second;
}

void LoraSet::merge_into(const std::string& name, Tensor& w) const {
  const auto* ds = find(name);
  if (!ds) return;
  merged_.insert(name);
  const int64_t out = w.dim(0), in = w.dim(1);
  float* W = w.f32();
  std::vector<double> row(static_cast<size_t>(in));
  for (const auto& d : *ds) {
    const int64_t r = d.a.dim(0);
    const float* A = d.a.f32();
    const float* B = d.b.f32();
    for (int64_t o = 0; o < out; ++o) {
      std::fill(row.begin(), row.end(), 0.0);
      for (int64_t k = 0; k < r; ++k) {
        const double bk = B[o * r + k];
        const float* a = A + k * in;
        for (int64_t i = 0; i < in; ++i) row[size_t(i)] += bk * a[i];
      }
      for (int64_t i = 0; i < in; ++i) W[o * in + i] = float(double(W[o * in + i]) + d.scale * row[size_t(i)]);
    }
  }
}

void LoraSet::attach_to(const std::string& name, LoraSlot& slot) const {
  const auto* ds = find(name);
  if (!ds) return;
  merged_.insert(name);
  for (const auto& d : *ds)
    slot.branches.push_back(
        {d.adapter, ops::prepare_weight(d.a, slot.compute), ops::prepare_weight(d.b, slot.compute), d.scale, true});
}

void LoraSet::attach(const LoraSlots& slots) const {
  for (const auto& [name, ds] : deltas_) {
    auto it = slots.find(name);
    if (it == slots.end()) fail("[lora] ", ds.front().adapter, ": ", name, " is not a linear layer that takes a LoRA");
  }
  for (const auto& [name, ds] : deltas_) attach_to(name, *slots.at(name));
}

void set_adapter_scale(const LoraSlots& slots, const std::string& adapter, double scale, bool active) {
  for (const auto& [name, s] : slots)
    for (auto& b : s->branches)
      if (b.adapter == adapter) b.scale = scale, b.active = active;
}

void detach_adapter(const LoraSlots& slots, const std::string& adapter) {
  for (const auto& [name, s] : slots)
    std::erase_if(s->branches, [&](const LoraBranch& b) { return b.adapter == adapter; });
}

void apply_lora(const Tensor& x, const LoraSlot& slot, Tensor& y) {
  if (!slot.any_active()) return;
  const bool bf = slot.compute == DType::BF16;
  const LoraBranch& first = slot.branches.front();
  const int64_t K = first.a.dim(1), N = first.b.dim(0);
  const int64_t M = K ? x.numel() / K : 0;
  if (x.numel() != M * K || y.numel() != M * N)
    fail("[lora] input ", shape_str(x.shape()), " / output ", shape_str(y.shape()), " do not fit the LoRA [", N, ", ",
         K, "]");
  // PEFT: x = x.to(lora_A.weight.dtype); result = result + lora_B(lora_A(x)) * scaling.
  const Tensor xin = bf ? x.reshape({M, K}).to(DType::BF16) : x.reshape({M, K}).to(DType::F32);
  const bool y_bf16 = y.dtype() == DType::BF16;
  Tensor acc = y_bf16 ? y.to(DType::F32).clone() : Tensor();
  float* r = y_bf16 ? acc.f32() : y.f32();
  const int64_t n = M * N;
  if (bf && !y_bf16) {  // the base layer's result as torch holds it
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) r[i] = round_bf16(r[i]);
  }
  for (const auto& br : slot.branches) {
    if (!br.active) continue;
    Tensor h = ops::linear(xin, br.a);  // [M, rank]
    if (bf) ops::round_to_bf16_(h);
    Tensor u = ops::linear(h, br.b);  // [M, N]
    const float* up = u.f32();
    const float s = float(br.scale);  // a float tensor times a Python float: float arithmetic
    if (bf) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) r[i] = round_bf16(r[i] + round_bf16(round_bf16(up[i]) * s));
    } else {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) r[i] = r[i] + up[i] * s;
    }
  }
  if (y_bf16) {
    uint16_t* yp = static_cast<uint16_t*>(y.raw());
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) yp[i] = f32_to_bf16(r[i]);
  }
}

void LoraSet::check_all_merged(const std::string& component) const {
  std::string missing;
  size_t n = 0;
  for (const auto& [name, d] : deltas_)
    if (!merged_.count(name) && n++ < 5) missing += (missing.empty() ? "" : ", ") + name;
  if (n)
    fail("[lora] ", n, " LoRA target", n == 1 ? "" : "s", " of the ", component,
         " are not linear layers it loads: ", missing);
}

std::string file_sha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("[lora] cannot read ", path);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx, buf.data(), size_t(in.gcount()));
  }
  unsigned char d[32];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, d, &n);
  EVP_MD_CTX_free(ctx);
  static const char* h = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < n; ++i) s += h[d[i] >> 4], s += h[d[i] & 15];
  return s;
}

}  // namespace zimage::weights
