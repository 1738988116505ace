// Request parsing and validation of `zimage serve`, separate from the HTTP layer (a fuzz target
// drives it): every field is type- and range-checked, and the whole request passes the CLI's
// checks (params.h, validate_call_params) before a job is queued.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/loras.h"
#include "zimage/error.h"
#include "zimage/pipeline.h"

namespace zimage::server {

// A request the server refuses: HTTP status, the offending field ("" when none) and the message
// ("[serve] ..."). Routes render it in their API's error shape.
class RequestError : public Error {
 public:
  RequestError(int status, std::string field, const std::string& message)
      : Error(message), status_(status), field_(std::move(field)) {}
  int status() const { return status_; }
  const std::string& field() const { return field_; }

 private:
  int status_;
  std::string field_;
};

// Defaults of every request (the `generate` options given to `zimage serve`).
struct Defaults {
  int width = 1024, height = 1024;
  int steps = 8;
  double guidance = 0.0;
  std::string negative_prompt;
  bool cfg_normalization = false;
  double cfg_truncation = 1.0;
  int max_sequence_length = 512;
};

// Per-request bounds set on the command line.
struct Limits {
  int max_size = 2048;  // largest width and height, pixels
  int max_steps = 50;
  int max_images = 4;  // images per request (A1111: batch_size x n_iter)
};

enum class Api { OpenAI, Jobs, Sdapi };

struct GenerateRequest {
  Api api = Api::OpenAI;
  std::string prompt, negative_prompt;
  int width = 0, height = 0, steps = 0;
  double guidance = 0;
  bool cfg_normalization = false;
  double cfg_truncation = 1.0;
  int max_sequence_length = 512;
  int num_images = 1;
  // One seed: one generator draws the batch's noise at once (as `generate --seed S --num-images N`);
  // several: one generator per image (A1111's seed, seed+1, ...). Random seeds are drawn at parsing.
  std::vector<uint64_t> seeds;
  std::string response_format = "b64_json";  // OpenAI: b64_json or url
  std::string model;                         // as the client named it (informational)
  // The prompt's A1111 `<lora:NAME:SCALE>` tags (removed from `prompt`): LoRAs the server has
  // (--lora, --lora-dir) at these scales for this request (server/loras.h).
  std::vector<LoraTag> loras;
  // img2img / inpainting (A1111 img2img, OpenAI edits): decoded from base64 / multipart and checked
  // at parsing; the output has the init image's size (sides rounded down to multiples of 16).
  bool img2img = false;
  std::vector<std::string> init_images;  // raw image file bytes (one image per request)
  std::string mask;                      // raw image file bytes ("" = none; white = repaint)
  double denoising_strength = 0.75;
  std::optional<Image> image, mask_image;  // decoded init_images[0] and mask
};

// POST /v1/images/generations: prompt, n, size "WxH", response_format, model, and the extensions
// seed, steps, guidance, negative_prompt. Unknown fields are ignored (clients send quality, style, user).
GenerateRequest parse_openai_generation(const std::string& body, const Defaults& d, const Limits& l);
// POST /v1/jobs: as OpenAI's, and width/height may replace size.
GenerateRequest parse_job(const std::string& body, const Defaults& d, const Limits& l);
// POST /sdapi/v1/txt2img: prompt, negative_prompt, steps, cfg_scale, width, height, seed, batch_size, n_iter.
GenerateRequest parse_sdapi_txt2img(const std::string& body, const Defaults& d, const Limits& l);
// POST /sdapi/v1/img2img: txt2img's fields plus init_images (base64, data: URLs allowed), mask, denoising_strength.
GenerateRequest parse_sdapi_img2img(const std::string& body, const Defaults& d, const Limits& l);

// A multipart/form-data field (POST /v1/images/edits).
struct FormField {
  std::string name, filename, content_type, content;
};
// POST /v1/images/edits: image (one or more), mask, prompt, n, size, response_format, model, and the extensions.
GenerateRequest parse_openai_edit(const std::vector<FormField>& fields, const Defaults& d, const Limits& l);

// The pipeline call of a request.
CallParams to_call_params(const GenerateRequest& r);

// The request's parameters as JSON (job status, A1111 "parameters").
nlohmann::json request_json(const GenerateRequest& r);

// base64 (RFC 4648, padding optional, whitespace refused); throws RequestError(400, field) on bad input.
std::string base64_decode(const std::string& s, const std::string& field);
std::string base64_encode(const void* data, size_t n);

}  // namespace zimage::server
