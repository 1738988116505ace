#include "core/config.h"

#include <cmath>
#include <fstream>

#include "core/error.h"

namespace zimage {

JsonConfig JsonConfig::load(const std::string& path) {
  std::ifstream f(path);
  if (!f) fail("config: cannot open '", path, "'");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    fail("config: ", path, ": not valid JSON (", e.what(), ")");
  }
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

int64_t JsonConfig::get_int(const std::string& key) const {
  auto& v = at(key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::floor(d) == d && std::fabs(d) < 9e15) return int64_t(d);
  }
  bad(key, "should be an integer, got " + v.dump());
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
  if (!v.is_number()) bad(key, "should be a number, got " + v.dump());
  double d = v.get<double>();
  if (!std::isfinite(d)) bad(key, "is not finite");
  return d;
}
double JsonConfig::get_float(const std::string& key, double def) const { return has(key) ? get_float(key) : def; }

bool JsonConfig::get_bool(const std::string& key) const {
  auto& v = at(key);
  if (!v.is_boolean()) bad(key, "should be true or false, got " + v.dump());
  return v.get<bool>();
}
bool JsonConfig::get_bool(const std::string& key, bool def) const { return has(key) ? get_bool(key) : def; }

std::string JsonConfig::get_string(const std::string& key) const {
  auto& v = at(key);
  if (!v.is_string()) bad(key, "should be a string, got " + v.dump());
  return v.get<std::string>();
}
std::string JsonConfig::get_string(const std::string& key, const std::string& def) const {
  return has(key) ? get_string(key) : def;
}

std::vector<int64_t> JsonConfig::get_int_list(const std::string& key) const {
  auto& v = at(key);
  if (!v.is_array()) bad(key, "should be a list of integers, got " + v.dump());
  std::vector<int64_t> out;
  for (auto& e : v) {
    if (!e.is_number_integer()) bad(key, "should be a list of integers, got " + v.dump());
    out.push_back(e.get<int64_t>());
  }
  return out;
}
std::vector<int64_t> JsonConfig::get_int_list(const std::string& key, std::vector<int64_t> def) const {
  return has(key) ? get_int_list(key) : def;
}

std::vector<std::string> JsonConfig::get_string_list(const std::string& key) const {
  auto& v = at(key);
  if (!v.is_array()) bad(key, "should be a list of strings, got " + v.dump());
  std::vector<std::string> out;
  for (auto& e : v) {
    if (!e.is_string()) bad(key, "should be a list of strings, got " + v.dump());
    out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace zimage
