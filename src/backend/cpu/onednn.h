// The process's one oneDNN CPU engine, and the one way to run a oneDNN primitive.
#pragma once
#include <dnnl.hpp>
#include <unordered_map>

namespace zimage::cpu::onednn {

const dnnl::engine& engine();

// Whether oneDNN computes bf16 primitives here: Debian's oneDNN 2.6 has bf16 matmul and
// convolution kernels only from AVX-512 on, and its ISA is capped at the level the process
// started with (cpu_level.h). Below that the callers widen bf16 operands to f32 (exact, and so are
// the products) and run the f32 primitive; bf16 results are rounded from its f32 result.
bool has_bf16();

// Runs a primitive to completion. Executions are serialised across the process: primitives are
// cached and shared (by us and by oneDNN's own primitive cache), and Debian's oneDNN 2.6 computes
// wrong values when the same primitives run at once from two calling threads (two pipelines used
// from two threads: tests/pipeline/concurrency_test.cpp). Nothing is lost on a CPU: each execution
// already uses every core.
void execute(const dnnl::primitive& p, const std::unordered_map<int, dnnl::memory>& args);
inline void reorder(const dnnl::primitive& r, const dnnl::memory& from, const dnnl::memory& to) {
  execute(r, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
}

}  // namespace zimage::cpu::onednn
