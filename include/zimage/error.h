// Errors: user-facing problems are zimage::Error exceptions whose text starts with the
// component and names the bad value; internal invariants use ZI_ASSERT (file and line).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace zimage {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... A>
std::string concat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}
}  // namespace detail

// Throws zimage::Error with the streamed arguments as message: fail("[vae] bad channels ", c).
template <class... A>
[[noreturn]] void fail(const A&... a) {
  throw Error(detail::concat(a...));
}

// Runs f(); a zimage::Error it throws is re-thrown with "[component] " in front (unless the
// message already starts with it), so lower-level errors (e.g. JsonConfig's) name the component.
template <class F>
auto with_component(const char* component, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    const std::string what = e.what(), tag = std::string("[") + component + "]";
    if (what.rfind(tag, 0) == 0) throw;
    fail(tag, " ", what);
  }
}

[[noreturn]] void assert_failed(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace zimage

#define ZI_ASSERT(cond, ...)                                                                                       \
  do {                                                                                                             \
    if (!(cond))                                                                                                   \
      ::zimage::assert_failed(#cond, __FILE__, __LINE__, ::zimage::detail::concat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)
