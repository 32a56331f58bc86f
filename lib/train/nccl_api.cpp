// nccl(): libnccl.so.2 opened once, its functions looked up by name.
#include "train/nccl_api.h"

#include "core/shared_library.h"

namespace race::train {

const NcclApi& nccl() {
  static const NcclApi api = [] {
    static const SharedLibrary library(
        {"libnccl.so.2", RACE_NCCL_BUILD_PATH},
        "GPU ranks with a GPU each sum gradients with NCCL 2: install it (the CUDA toolkit's, or the pip package "
        "nvidia-nccl-cu13) and put the folder holding libnccl.so.2 on LD_LIBRARY_PATH");
    NcclApi loaded{};
#define RACE_LOAD(name) loaded.name = library.function<decltype(loaded.name)>("nccl" #name)
    RACE_LOAD(AllReduce);
    RACE_LOAD(CommAbort);
    RACE_LOAD(CommDestroy);
    RACE_LOAD(CommGetAsyncError);
    RACE_LOAD(CommInitRank);
    RACE_LOAD(GetErrorString);
    RACE_LOAD(GetLastError);
    RACE_LOAD(GetUniqueId);
#undef RACE_LOAD
    return loaded;
  }();
  return api;
}

}  // namespace race::train
