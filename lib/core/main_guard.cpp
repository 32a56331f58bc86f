// Exception-to-exit-status translation for app mains.
#include "core/main_guard.h"

#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "core/error.h"
#include "core/logging.h"

namespace race {

namespace {

int report(const std::string& message, int status) noexcept {
  try {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", message);
    log_to_file_only(spdlog::level::err, message);
  } catch (...) {
    // Reporting must not throw out of main; stderr itself failing leaves nothing better to do.
  }
  return status;
}

}  // namespace

int run_guarded(const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    return report(e.what(), 2);
  } catch (const Error& e) {
    return report(e.what(), 1);
  } catch (const std::bad_alloc& e) {
    return report(std::string("out of memory: ") + e.what(), 1);
  } catch (const std::exception& e) {
    return report(e.what(), 1);
  } catch (...) {
    return report("unknown exception", 1);
  }
}

}  // namespace race
