// Fuzzes the request parsing and validation of `zimage serve` (src/server/request.cpp): the JSON
// bodies of POST /v1/images/generations, /v1/jobs, /sdapi/v1/txt2img and /sdapi/v1/img2img, and
// the multipart fields of /v1/images/edits. The first byte picks the route; for edits the rest is
// split at NUL bytes into name/value pairs. A refused request must be a RequestError with an HTTP
// status 400 or 4xx and a "[serve] " message; an accepted one must respect the limits.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "server/request.h"

using namespace zimage;
using namespace zimage::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  Defaults d;
  d.width = d.height = 64;
  d.steps = 2;
  const Limits l{256, 10, 4};
  try {
    GenerateRequest r;
    switch (data[0] % 5) {
      case 0:
        r = parse_openai_generation(body, d, l);
        break;
      case 1:
        r = parse_job(body, d, l);
        break;
      case 2:
        r = parse_sdapi_txt2img(body, d, l);
        break;
      case 3:
        r = parse_sdapi_img2img(body, d, l);
        break;
      default: {
        std::vector<FormField> fields;
        size_t pos = 0;
        while (pos <= body.size()) {
          size_t a = body.find('\0', pos);
          std::string name = body.substr(pos, a == std::string::npos ? std::string::npos : a - pos);
          if (a == std::string::npos) break;
          size_t b = body.find('\0', a + 1);
          std::string value = body.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
          fields.push_back({name, "", "", value});
          if (b == std::string::npos) break;
          pos = b + 1;
        }
        r = parse_openai_edit(fields, d, l);
      }
    }
    if (r.width < 16 || r.width > l.max_size || r.width % 16 || r.height < 16 || r.height > l.max_size ||
        r.height % 16 || r.steps < 1 || r.steps > l.max_steps || r.num_images < 1 || r.num_images > l.max_images ||
        r.seeds.empty())
      std::abort();
    to_call_params(r);
    request_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const RequestError& e) {
    if (e.status() < 400 || e.status() > 499 || std::string(e.what()).rfind("[serve] ", 0) != 0) std::abort();
  }
  return 0;
}
