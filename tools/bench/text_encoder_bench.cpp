// bench_text_encoder: time of ZImagePipeline's prompt encoding on the CPU: chat template +
// tokenizer + Qwen3 text encoder (hidden_states[-2] of the real tokens), as the pipeline runs it.
//
//   bench_text_encoder MODEL_DIR --prompt P [--dtype bf16|f32] [--threads N] [--reps R]
// Prints one JSON line: load seconds, real tokens, seconds of each repetition.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/ops.h"
#include "text_encoder/qwen3_text_encoder.h"
#include "tokenizer/tokenizer.h"

using namespace zimage;

namespace {
[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: bench_text_encoder MODEL_DIR --prompt P [--dtype bf16|f32] [--threads N] [--reps R]\n");
  std::exit(2);
}
double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  std::string dir = argv[1], prompt, dtype = "bf16";
  int threads = 0, reps = 3, max_len = 512;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--prompt")
      prompt = next();
    else if (a == "--dtype")
      dtype = next();
    else if (a == "--threads")
      threads = std::atoi(next().c_str());
    else if (a == "--reps")
      reps = std::max(1, std::atoi(next().c_str()));
    else if (a == "--max-sequence-length")
      max_len = std::atoi(next().c_str());
    else
      usage();
  }
  if (dtype != "bf16" && dtype != "f32") usage();
  try {
    ops::set_num_threads(threads);
    auto t0 = std::chrono::steady_clock::now();
    Qwen2Tokenizer tok = Qwen2Tokenizer::from_folder(dir + "/tokenizer");
    Qwen3TextEncoder te = Qwen3TextEncoder::load(dir + "/text_encoder", dtype == "bf16" ? DType::BF16 : DType::F32);
    double load_s = since(t0);
    std::vector<double> secs;
    int n_tokens = 0;
    for (int r = 0; r < reps; ++r) {
      auto s0 = std::chrono::steady_clock::now();
      TokenizedPrompt tp = tok.encode_prompt(prompt, max_len);
      Tensor h = te.encode_masked(tp.input_ids, tp.attention_mask);
      secs.push_back(since(s0));
      n_tokens = tp.num_real;
      if (h.dim(0) != tp.num_real) fail("[bench_text_encoder] got ", h.dim(0), " rows for ", tp.num_real, " tokens");
    }
    std::printf("{\"load_s\": %.4f, \"tokens\": %d, \"layers_run\": %ld, \"threads\": %d, \"seconds\": [", load_s,
                n_tokens, long(te.layers_run()), ops::num_threads());
    for (size_t i = 0; i < secs.size(); ++i) std::printf("%s%.5f", i ? ", " : "", secs[i]);
    std::printf("]}\n");
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_text_encoder: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
