// A1111 infotext ("parameters" PNG chunk), as stable-diffusion-webui's processing.create_infotext
// writes it and infotext_utils.parse_generation_parameters reads it.
#include <charconv>
#include <cmath>
#include <limits>
#include <regex>

#include "core/error.h"
#include "zimage/image.h"

namespace zimage {

namespace {

// infotext_utils.quote: JSON-quote values that contain ',', ':' or a newline
// (json.dumps(text, ensure_ascii=False); nlohmann's escapes are the same set as Python's).
std::string quote(const std::string& v) {
  if (v.find_first_of(",\n:") == std::string::npos) return v;
  try {
    return nlohmann::json(v).dump();
  } catch (const nlohmann::json::exception&) {
    fail("[image] infotext value is not valid UTF-8: '", v, "'");
  }
}

// infotext_utils.unquote: a value in double quotes is JSON-decoded when it parses.
std::string unquote(const std::string& v) {
  if (v.size() < 2 || v.front() != '"' || v.back() != '"') return v;
  try {
    auto j = nlohmann::json::parse(v);
    if (j.is_string()) return j.get<std::string>();
  } catch (const nlohmann::json::exception&) {}
  return v;
}

// Python float repr without a trailing ".0" (A1111 shows "CFG scale: 7", "CFG scale: 3.5").
std::string format_number(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  return std::string(buf, r.ptr);
}

const char* kSpace = " \t\n\r\v\f";

std::string strip(const std::string& s) {
  size_t b = s.find_first_not_of(kSpace);
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(kSpace);
  return s.substr(b, e - b + 1);
}

// re_param_code from infotext_utils.
const std::regex& param_re() {
  static const std::regex re(R"re(\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$))re");
  return re;
}

std::vector<std::pair<std::string, std::string>> find_params(const std::string& line) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto it = std::sregex_iterator(line.begin(), line.end(), param_re()); it != std::sregex_iterator(); ++it) {
    if ((*it)[0].length() == 0) continue;
    out.emplace_back((*it)[1].str(), (*it)[2].str());
  }
  return out;
}

}  // namespace

std::string format_infotext(const InfotextParams& p) {
  std::vector<std::pair<std::string, std::string>> kv = {
      {"Steps", std::to_string(p.steps)},
      {"Sampler", p.sampler},
      {"CFG scale", format_number(p.cfg_scale)},
      {"Seed", std::to_string(p.seed)},
      {"Size", std::to_string(p.width) + "x" + std::to_string(p.height)},
  };
  if (!p.model.empty()) kv.emplace_back("Model", p.model);
  for (const auto& e : p.extra) kv.push_back(e);

  std::string params;
  for (size_t i = 0; i < kv.size(); ++i) {
    const auto& [k, v] = kv[i];
    if (k.find_first_of(",:\n") != std::string::npos)
      fail("[image] infotext key '", k, "' must not contain ',', ':' or a newline");
    if (i) params += ", ";
    params += (k == v) ? k : k + ": " + quote(v);  // A1111: `k if k == v else f'{k}: {quote(v)}'`
  }
  std::string neg = p.negative_prompt.empty() ? "" : "\nNegative prompt: " + p.negative_prompt;
  return strip(p.prompt + neg + "\n" + params);
}

ParsedInfotext parse_infotext(const std::string& text) {
  ParsedInfotext out;
  std::vector<std::string> lines;
  std::string s = strip(text);
  for (size_t b = 0;;) {
    size_t e = s.find('\n', b);
    lines.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  std::string last = lines.back();
  lines.pop_back();
  auto params = find_params(last);
  if (params.size() < 3) {
    lines.push_back(last);
    params.clear();
  }
  bool negative = false;
  for (std::string line : lines) {
    line = strip(line);
    if (line.rfind("Negative prompt:", 0) == 0) {
      negative = true;
      line = strip(line.substr(16));
    }
    std::string& dst = negative ? out.negative_prompt : out.prompt;
    dst += (dst.empty() ? "" : "\n") + line;
  }
  for (auto& [k, v] : params) out.params.emplace_back(k, unquote(v));
  return out;
}

namespace {

// The whole of s (no sign for unsigned T, no spaces, no trailing characters) as a T.
template <class T>
std::optional<T> to_integer(const std::string& s) {
  T v{};
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

int infotext_int(const std::string& key, const std::string& v) {
  auto i = to_integer<int>(v);
  if (!i)
    fail("[image] infotext ", key, " '", v, "' is not an integer in [", std::numeric_limits<int>::min(), ", ",
         std::numeric_limits<int>::max(), "]");
  return *i;
}

}  // namespace

InfotextValues read_infotext(const std::string& text) {
  ParsedInfotext p = parse_infotext(text);
  InfotextValues out;
  out.prompt = p.prompt;
  out.negative_prompt = p.negative_prompt;
  for (const auto& [key, raw] : p.params) {
    const std::string v = strip(raw);
    if (key == "Steps") {
      out.steps = infotext_int(key, v);
    } else if (key == "CFG scale") {
      double d = 0;
      auto r = std::from_chars(v.data(), v.data() + v.size(), d);
      if (v.empty() || r.ec != std::errc() || r.ptr != v.data() + v.size() || !std::isfinite(d))
        fail("[image] infotext CFG scale '", v, "' is not a finite number");
      out.cfg_scale = d;
    } else if (key == "Seed") {
      auto s = to_integer<uint64_t>(v);
      if (!s)
        fail("[image] infotext Seed '", v, "' is not an integer in [0, ", std::numeric_limits<uint64_t>::max(), "]");
      out.seed = *s;
    } else if (key == "Size") {
      size_t x = v.find('x');
      if (x == std::string::npos) fail("[image] infotext Size '", v, "' is not <width>x<height>");
      out.width = infotext_int("Size width", v.substr(0, x));
      out.height = infotext_int("Size height", v.substr(x + 1));
    } else if (key == "Model") {
      out.model = v;
    }
  }
  return out;
}

}  // namespace zimage
