#include "backend/cpu/onednn.h"

#include <mutex>

#include "backend/cpu/cpu_level.h"

namespace zimage::cpu::onednn {
namespace {
// oneDNN dispatches on its own probe; below the amx level its ISA is capped at the level's, so a
// forced ZIMAGE_CPU level runs that ISA in oneDNN too. The cap can only be set before oneDNN
// creates anything (here, before the process's one engine): it is set once, for the level the
// kernel table starts with.
bool cap_isa() {
  dnnl::cpu_isa isa = dnnl::cpu_isa::all;
  switch (active_level()) {
    case Level::Portable:
      isa = dnnl::cpu_isa::sse41;
      break;
    case Level::Avx2:
      isa = dnnl::cpu_isa::avx2;
      break;
    case Level::Avx512:
      isa = dnnl::cpu_isa::avx512_core_bf16;
      break;
    case Level::Amx:
      return true;
  }
  return dnnl::set_max_cpu_isa(isa) == dnnl::status::success;
}
struct Context {
  bool capped = cap_isa();
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  std::mutex mu;
};
Context& context() {
  static Context c;
  return c;
}
}  // namespace

const dnnl::engine& engine() { return context().eng; }

bool has_bf16() { return active_level() >= Level::Avx512; }

void execute(const dnnl::primitive& p, const std::unordered_map<int, dnnl::memory>& args) {
  Context& c = context();
  std::lock_guard<std::mutex> lock(c.mu);
  p.execute(c.strm, args);
  c.strm.wait();
}

}  // namespace zimage::cpu::onednn
