// Errors that carry context: every failure the user can cause becomes a race::Error whose message names
// the file, key or value at fault and what was expected. RACE_CHECK adds the source location (file:line)
// for internal invariants; user-facing messages should not need it to be understood.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace race {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A mistake on the command line (bad flag value, malformed --set). Separate from Error so that
// run_guarded can exit with status 2, the usual signal to scripts that the invocation itself was wrong.
class UsageError : public Error {
 public:
  using Error::Error;
};

// Throws race::Error with a formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace race

// Internal invariant: on failure throws race::Error("file:line: check `cond` failed: message").
#define RACE_CHECK(cond, ...)                                                                   \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      throw ::race::Error(::fmt::format("{}:{}: check `{}` failed: {}", __FILE__, __LINE__, #cond, \
                                        ::fmt::format(__VA_ARGS__)));                           \
    }                                                                                           \
  } while (0)
