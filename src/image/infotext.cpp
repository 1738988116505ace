// A1111 infotext ("parameters" PNG chunk), as stable-diffusion-webui's processing.create_infotext
// writes it and infotext_utils.parse_generation_parameters reads it.
#include <charconv>
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
  } catch (const nlohmann::json::exception&) {
  }
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

}  // namespace zimage
