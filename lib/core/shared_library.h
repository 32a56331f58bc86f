// A shared library opened at run time (dlopen) and kept open for the life of the process. For the vendor
// libraries only CUDA runs need, cuBLASLt (about 540 MB) and NCCL (over 200 MB): linked, every binary would
// load them at start, CPU runs included (about 210 MB more resident memory, and no start at all under a
// small address-space limit or on a machine without them).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace race {

class SharedLibrary {
 public:
  // Opens the first of `candidates` (sonames searched the loader's way, or paths) that loads; race::Error
  // naming every candidate with its loader error, and `hint`, when none does.
  SharedLibrary(const std::vector<std::string>& candidates, std::string_view hint);

  // The function `name` of this library; race::Error naming the library and the symbol when it lacks it
  // (an older version than the one this build was compiled against).
  template <class Function>
  Function function(const char* name) const {
    return reinterpret_cast<Function>(address(name));
  }

  const std::string& opened() const { return opened_; }  // the candidate that loaded

 private:
  void* address(const char* name) const;

  void* handle_ = nullptr;
  std::string opened_;
};

}  // namespace race
