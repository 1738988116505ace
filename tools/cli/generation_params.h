// The generation parameters of `zimage generate`, one row each, in one table (generation_params.cpp).
//
// A row says which CLI option sets the parameter and which GenerateArgs field holds it, under which
// key the PNG metadata (the "zimage" JSON chunk) records it, how --from-png reads it back, where it
// goes in the library call (PretrainedOptions / CallParams / VaeTilingOptions), and whether
// `zimage serve` takes it as a server-wide default. The CLI options of generate and serve, the PNG
// metadata, --from-png and the pipeline call all loop over this table; docs/PARAMETERS.md is its
// printout (`zimage params`), and a test keeps the two equal.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "cli_generate.h"
#include "zimage/pipeline.h"

namespace zimage::cli {

using json = nlohmann::json;

// The values of a zimage JSON chunk, each checked for type and range. Errors:
// "[from-png] <png>: '<key>' is <value>, expected <what>".
class PngParams {
 public:
  PngParams(const std::string& png, const json& j, const std::set<std::string>& given)
      : png_(png), j_(j), given_(given) {}

  // The value of `key` unless it is absent or the option `opt` (e.g. "--steps") was given on the command line.
  const json* get(const char* opt, const char* key) const;
  [[noreturn]] void bad(const char* key, const json& v, const std::string& expected) const;
  std::string string(const char* key, const json& v) const;
  bool boolean(const char* key, const json& v) const;
  double number(const char* key, const json& v) const;  // finite
  // An integral JSON number (64 or 64.0, not 64.9) in [lo, hi], exactly.
  uint64_t unsigned_integer(const char* key, const json& v, uint64_t lo, uint64_t hi) const;
  int integer(const char* key, const json& v, int lo, int hi) const;  // 0 <= lo <= hi
  const std::string& png() const { return png_; }

 private:
  const std::string& png_;
  const json& j_;
  const std::set<std::string>& given_;
};

// sha256 of a file's bytes, lowercase hex (what PNG metadata records for each input image).
std::string sha256_hex(const std::string& path);

// Where a row's value goes in the library call.
struct PipelineTargets {
  PretrainedOptions& pretrained;
  CallParams& call;
  VaeTilingOptions& tiling;
};

// What one output image's metadata knows beyond GenerateArgs.
struct ImageRecord {
  std::string prompt, negative_prompt;
  uint64_t seed = 0;
  // Where the image's initial noise sits: slice noise_index of one draw of noise_batch_size
  // images from the seed; image_index: its place among this run's outputs.
  int noise_batch_size = 1, noise_index = 0, image_index = 0;
  bool edit = false;             // img2img or inpainting (an init image, no ControlNet)
  bool control = false;          // a ControlNet run
  double strength = 0;           // the strength that ran (edit only)
  json inputs = json::object();  // input images: {"init_image": {"file", "sha256"}, ...}
  json loras = json::array();    // [{name, path, sha256, scale}, ...]
};

using ArgsField = std::variant<std::monostate, std::string GenerateArgs::*, std::vector<std::string> GenerateArgs::*,
                               int GenerateArgs::*, double GenerateArgs::*, bool GenerateArgs::*,
                               std::optional<double> GenerateArgs::*>;

enum ParamScope : unsigned { kGenerate = 1, kServe = 2, kInfo = 4 };  // kInfo: `zimage info` (the model's files)

struct GenerationParam {
  const char* flags = nullptr;  // CLI11 names, e.g. "-s,--steps"
  const char* help = nullptr;
  ArgsField field;  // the GenerateArgs member the option fills
  // The key in the PNG's "zimage" JSON; nullptr: not recorded (how the file is written, or where
  // it runs, does not change the pixels).
  const char* key = nullptr;
  const char* library = "";              // where it goes in the library, e.g. "CallParams::num_inference_steps"
  const char* diffusers = "";            // the diffusers argument, e.g. "num_inference_steps"
  const char* server = "";               // docs: the `zimage serve` request field (JSON / sdapi)
  const char* infotext = "";             // docs: the A1111 `parameters` text's key
  unsigned scope = kGenerate;            // kGenerate | kServe
  const char* serve_help = nullptr;      // help under `zimage serve` (nullptr: as generate's)
  bool restored = false;                 // --from-png restores it (a recorded key that is not restored: informative)
  const char* recorded_when = "always";  // docs: when the metadata holds the key
  int lo = 0, hi = 0;                    // range of an int restored from a PNG
  bool capture_default = true;           // show the default in --help
  void (*customize)(CLI::Option*) = nullptr;  // e.g. a delimiter or a file check
  // nullptr: run_generate handles it (a value that needs other options, e.g. the init image's size).
  void (*apply)(const GenerateArgs&, PipelineTargets&) = nullptr;
  // nullptr: by the field's type, e.g. int -> PngParams::integer(key, v, lo, hi).
  void (*restore)(const PngParams&, const json& v, GenerateArgs&) = nullptr;
  // nullptr: the field's value under `key`.
  void (*record)(const GenerateArgs&, const ImageRecord&, json& out) = nullptr;

  // The long option name ("--steps"): the key of GenerateArgs::given.
  std::string long_name() const;
};

// The table, in --help order.
const std::vector<GenerationParam>& generation_params();
const GenerationParam& generation_param(const std::string& long_name);  // throws std::out_of_range

// Registers the rows of `scope` on a CLI11 (sub)command, filling `a`.
void add_param_options(CLI::App& app, GenerateArgs& a, ParamScope scope);
// Every row's `apply`.
void apply_params(const GenerateArgs& a, PipelineTargets& t);
// The `apply` of the rows of `scope` that go into PretrainedOptions (how serve and info load the model).
void apply_pretrained_params(const GenerateArgs& a, PretrainedOptions& po, ParamScope scope);
// The model's single files as the PNG metadata records them ({"transformer_file": ..., ...}, the
// rows serve and info share with generate), for `zimage serve`'s images.
std::map<std::string, std::string> record_model_files(const GenerateArgs& a);
// Without a model (`model_opt`, e.g. "-m/--model") every component must be a single file
// (--transformer, --text-encoder, --vae: configs inferred from them); errors start with `tag`.
void check_model_or_files(const GenerateArgs& a, const char* tag, const char* model_opt);
// The "zimage" metadata JSON of one image: every recorded row.
json record_params(const GenerateArgs& a, const ImageRecord& img);
// Restores every recorded, restorable row present in the JSON and not given on the command line.
void restore_params(const PngParams& P, const json& j, GenerateArgs& a);
// The table as Markdown (docs/PARAMETERS.md).
std::string params_markdown();
// The table as JSON, for tests: [{"option", "flags", "key", "recorded_when", "restored", "serve"}, ...].
json params_json();

}  // namespace zimage::cli
