// SharedLibrary: dlopen of the first candidate that loads, dlsym with errors that name what is missing.
#include "core/shared_library.h"

#include <dlfcn.h>

#include "core/error.h"

namespace race {

SharedLibrary::SharedLibrary(const std::vector<std::string>& candidates, std::string_view hint) {
  std::string tried;
  for (const std::string& candidate : candidates) {
    // RTLD_LOCAL: the library's symbols are looked up through this object only, never interposed.
    handle_ = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ != nullptr) {
      opened_ = candidate;
      return;
    }
    const char* why = dlerror();
    tried += fmt::format("\n  {}: {}", candidate, why != nullptr ? why : "unknown error");
  }
  fail("cannot load a shared library; tried:{}\nhint: {}", tried, hint);
}

void* SharedLibrary::address(const char* name) const {
  dlerror();  // clear an earlier error, so a null symbol and a missing one can be told apart
  void* symbol = dlsym(handle_, name);
  if (const char* why = dlerror(); why != nullptr)
    fail("{} has no function {} ({}): it is older than the version race was built against", opened_, name, why);
  return symbol;
}

}  // namespace race
