#include "core/config.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/file_io.h"

namespace zimage {

JsonConfig JsonConfig::load(const std::string& path) {
  nlohmann::json j = parse_json_file(path, "config: ");
  if (!j.is_object()) fail("config: ", path, ": top level is not a JSON object");
  return from_json(std::move(j), path);
}

JsonConfig JsonConfig::from_json(nlohmann::json j, std::string origin) {
  JsonConfig c;
  c.j_ = std::move(j);
  c.path_ = std::move(origin);
  return c;
}

void JsonConfig::bad(const std::string& key, const std::string& why) const {
  fail("config: ", path_, ": '", key, "' ", why);
}

const nlohmann::json& JsonConfig::at(const std::string& key) const {
  if (!has(key)) bad(key, "is missing");
  return j_[key];
}

namespace {
// An integral JSON number that fits int64_t (an unsigned one above INT64_MAX does not).
bool as_int64(const nlohmann::json& v, int64_t* out) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) return false;
    *out = int64_t(u);
    return true;
  }
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
    return true;
  }
  return false;
}
}  // namespace

int64_t JsonConfig::get_int(const std::string& key) const {
  auto& v = at(key);
  if (int64_t i; as_int64(v, &i)) return i;
  if (v.is_number_unsigned()) bad(key, "= " + json_excerpt(v) + " is too large");
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::floor(d) == d && std::fabs(d) < 9e15) return int64_t(d);
  }
  bad(key, "should be an integer, got " + json_excerpt(v));
}
int64_t JsonConfig::get_int(const std::string& key, int64_t def) const { return has(key) ? get_int(key) : def; }
int64_t JsonConfig::get_int(const std::string& key, int64_t def, int64_t lo, int64_t hi) const {
  int64_t v = get_int(key, def);
  if (v < lo || v > hi)
    bad(key, "= " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}
int64_t JsonConfig::get_int_in(const std::string& key, int64_t lo, int64_t hi) const {
  int64_t v = get_int(key);
  if (v < lo || v > hi)
    bad(key, "= " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

double JsonConfig::get_float(const std::string& key) const {
  auto& v = at(key);
  if (!v.is_number()) bad(key, "should be a number, got " + json_excerpt(v));
  double d = v.get<double>();
  if (!std::isfinite(d)) bad(key, "is not finite");
  return d;
}
double JsonConfig::get_float(const std::string& key, double def) const { return has(key) ? get_float(key) : def; }

bool JsonConfig::get_bool(const std::string& key) const {
  auto& v = at(key);
  if (!v.is_boolean()) bad(key, "should be true or false, got " + json_excerpt(v));
  return v.get<bool>();
}
bool JsonConfig::get_bool(const std::string& key, bool def) const { return has(key) ? get_bool(key) : def; }

std::string JsonConfig::get_string(const std::string& key) const {
  auto& v = at(key);
  if (!v.is_string()) bad(key, "should be a string, got " + json_excerpt(v));
  return v.get<std::string>();
}
std::string JsonConfig::get_string(const std::string& key, const std::string& def) const {
  return has(key) ? get_string(key) : def;
}

std::vector<int64_t> JsonConfig::get_int_list(const std::string& key) const {
  auto& v = at(key);
  if (!v.is_array()) bad(key, "should be a list of integers, got " + json_excerpt(v));
  std::vector<int64_t> out;
  for (auto& e : v) {
    int64_t i;
    if (!as_int64(e, &i)) bad(key, "should be a list of integers, got " + json_excerpt(v));
    out.push_back(i);
  }
  return out;
}
std::vector<int64_t> JsonConfig::get_int_list(const std::string& key, std::vector<int64_t> def) const {
  return has(key) ? get_int_list(key) : def;
}

std::vector<std::string> JsonConfig::get_string_list(const std::string& key) const {
  auto& v = at(key);
  if (!v.is_array()) bad(key, "should be a list of strings, got " + json_excerpt(v));
  std::vector<std::string> out;
  for (auto& e : v) {
    if (!e.is_string()) bad(key, "should be a list of strings, got " + json_excerpt(v));
    out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace zimage
