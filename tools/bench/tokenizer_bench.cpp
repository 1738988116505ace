// bench_tokenizer: zimage's Qwen2Tokenizer throughput on a text corpus, and prompt token counts.
//
//   bench_tokenizer TOKENIZER_DIR --corpus FILE [--threads N] [--reps R]
//       encodes every non-empty line of FILE (as its own text, like a batch call of the fast
//       tokenizer), R times; prints one JSON line: lines, bytes, tokens, seconds per pass, tokens/s.
//   bench_tokenizer TOKENIZER_DIR --prompt-tokens PROMPT [--max-sequence-length L]
//       prints the number of real tokens of PROMPT after ZImagePipeline's chat template (JSON).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

using namespace zimage;

namespace {

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: bench_tokenizer TOKENIZER_DIR --corpus FILE [--threads N] [--reps R]\n"
               "       bench_tokenizer TOKENIZER_DIR --prompt-tokens PROMPT [--max-sequence-length L]\n");
  std::exit(2);
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  std::string dir = argv[1], corpus, prompt;
  bool have_prompt = false;
  int threads = 1, reps = 3, max_len = 512;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--corpus")
      corpus = next();
    else if (a == "--prompt-tokens")
      prompt = next(), have_prompt = true;
    else if (a == "--threads")
      threads = std::atoi(next().c_str());
    else if (a == "--reps")
      reps = std::max(1, std::atoi(next().c_str()));
    else if (a == "--max-sequence-length")
      max_len = std::atoi(next().c_str());
    else
      usage();
  }
  if (corpus.empty() == !have_prompt) usage();
  try {
    auto t0 = std::chrono::steady_clock::now();
    Qwen2Tokenizer tok = Qwen2Tokenizer::from_folder(dir);
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (have_prompt) {
      TokenizedPrompt tp = tok.encode_prompt(prompt, max_len);
      std::printf("{\"prompt_tokens\": %d, \"dropped\": %d, \"load_s\": %.4f}\n", tp.num_real, tp.num_dropped, load_s);
      return 0;
    }
    std::ifstream f(corpus, std::ios::binary);
    if (!f) fail("[bench_tokenizer] cannot read corpus '", corpus, "'");
    std::vector<std::string> lines;
    std::string line;
    size_t bytes = 0;
    while (std::getline(f, line))
      if (!line.empty()) {
        bytes += line.size();
        lines.push_back(std::move(line));
      }
    if (threads > 0) omp_set_num_threads(threads);
    std::vector<double> secs;
    long long tokens = 0;
    for (int r = 0; r < reps; ++r) {
      long long n = 0;
      auto s0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(dynamic, 64) reduction(+ : n)
      for (size_t i = 0; i < lines.size(); ++i) n += (long long)tok.encode(lines[i]).size();
      secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count());
      tokens = n;
    }
    // The first pass fills the BPE cache; report it and the best of the rest.
    double first = secs.front();
    double best = *std::min_element(secs.begin(), secs.end());
    std::printf(
        "{\"corpus\": \"%s\", \"lines\": %zu, \"bytes\": %zu, \"tokens\": %lld, \"threads\": %d, \"load_s\": %.4f, "
        "\"first_pass_s\": %.4f, \"best_pass_s\": %.4f, \"tokens_per_s\": %.1f, \"tokens_per_s_first\": %.1f}\n",
        json_escape(corpus).c_str(), lines.size(), bytes, tokens, omp_get_max_threads(), load_s, first, best,
        double(tokens) / best, double(tokens) / first);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_tokenizer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
