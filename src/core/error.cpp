#include "core/error.h"

namespace zimage {
void assert_failed(const char* expr, const char* file, int line, const std::string& msg) {
  throw std::logic_error(
      detail::concat("internal error: ", expr, " failed at ", file, ":", line, msg.empty() ? "" : ": ", msg));
}
}  // namespace zimage
