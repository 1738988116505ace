#include "backend/cpu/onednn.h"

#include <mutex>

namespace zimage::cpu::onednn {
namespace {
struct Context {
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

void execute(const dnnl::primitive& p, const std::unordered_map<int, dnnl::memory>& args) {
  Context& c = context();
  std::lock_guard<std::mutex> lock(c.mu);
  p.execute(c.strm, args);
  c.strm.wait();
}

}  // namespace zimage::cpu::onednn
