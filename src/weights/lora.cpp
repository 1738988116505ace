#include "weights/lora.h"

#include <openssl/evp.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

namespace zimage::weights {

LoraSpec parse_lora_arg(const std::string& arg) {
  LoraSpec s{arg, 1.0};
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
  for (auto [d, u] : {std::pair{"context.refiner.", "context_refiner."}, {"noise.refiner.", "noise_refiner."},
                      {"adaLN.modulation.", "adaLN_modulation."}, {"all.final.layer.", "all_final_layer."},
                      {"all.x.embedder.", "all_x_embedder."}, {"cap.embedder.", "cap_embedder."},
                      {"t.embedder.", "t_embedder."}})
    replace_all(k, d, u);
  return k;
}

struct Parts {
  Tensor a, b;
  bool has_alpha = false;
  double alpha = 0;
};

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
      if (starts(k, "transformer.")) k = k.substr(12);
      else if (starts(k, "diffusion_model.")) k = k.substr(16);
      else if (starts(k, "lora_unet_")) k = k.substr(10), kohya = true;
      replace_all(k, "default.", "");
      std::string role;
      for (auto [suf, r] : {std::pair{".lora_A.weight", "A"}, {".lora_B.weight", "B"}, {".lora_down.weight", "A"},
                            {".lora_up.weight", "B"}, {".alpha", "alpha"}})
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
      Tensor t = file.get(key).to(DType::F32).clone();
      if (!finite_all(t)) fail("[lora] ", f.path, ": ", key, " holds a NaN or infinite value");
      Parts& p = mods[k];
      if (role == "A") p.a = t;
      else if (role == "B") p.b = t;
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
      for (auto& [name, b] : targets) {
        const Shape& w = linear.at(name);
        if (p.a.dim(1) != w[1] || b.dim(0) != w[0] || b.dim(1) != r)
          fail("[lora] ", f.path, ": module ", name, ": lora_A ", shape_str(p.a.shape()), " and lora_B ",
               shape_str(b.shape()), " do not fit the weight ", shape_str(w), " (expected [rank, ", w[1], "] and [",
               w[0], ", rank])");
        if (r > std::min(w[0], w[1]))
          fail("[lora] ", f.path, ": module ", name, ": rank ", r, " is larger than the layer ", shape_str(w));
        if (p.has_alpha && !std::isfinite(p.alpha))
          fail("[lora] ", f.path, ": module ", name, ": alpha ", p.alpha, " is not finite");
        const double factor = f.scale * (p.has_alpha ? p.alpha / double(r) : 1.0);
        set.deltas_[name + ".weight"].push_back({p.a, b, factor});
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
      for (int64_t i = 0; i < in; ++i) W[o * in + i] = float(double(W[o * in + i]) + d.factor * row[size_t(i)]);
    }
  }
}

void LoraSet::check_all_merged(const std::string& component) const {
  std::string missing;
  size_t n = 0;
  for (const auto& [name, d] : deltas_)
    if (!merged_.count(name) && n++ < 5) missing += (missing.empty() ? "" : ", ") + name;
  if (n) fail("[lora] ", n, " LoRA target", n == 1 ? "" : "s", " of the ", component, " are not linear layers it loads: ", missing);
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
