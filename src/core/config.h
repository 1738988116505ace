// Typed access to a component's config.json: a missing key, a wrong type or an out-of-range
// value is an Error naming the file, the key and the value.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace zimage {

class JsonConfig {
 public:
  static JsonConfig load(const std::string& path);
  static JsonConfig from_json(nlohmann::json j, std::string origin);

  const std::string& path() const { return path_; }
  const nlohmann::json& json() const { return j_; }
  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }

  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t def) const;
  // Integer within [lo, hi].
  int64_t get_int(const std::string& key, int64_t def, int64_t lo, int64_t hi) const;
  int64_t get_int_in(const std::string& key, int64_t lo, int64_t hi) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double def) const;
  bool get_bool(const std::string& key) const;
  bool get_bool(const std::string& key, bool def) const;
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& def) const;
  std::vector<int64_t> get_int_list(const std::string& key) const;
  std::vector<int64_t> get_int_list(const std::string& key, std::vector<int64_t> def) const;
  std::vector<std::string> get_string_list(const std::string& key) const;

  [[noreturn]] void bad(const std::string& key, const std::string& why) const;

 private:
  const nlohmann::json& at(const std::string& key) const;
  std::string path_;
  nlohmann::json j_;
};

}  // namespace zimage
