// cublaslt(): libcublasLt.so.13 opened once, its functions looked up by name.
#include "kernels/cuda/cublaslt_api.h"

#include "core/shared_library.h"

namespace race::kernels::cuda {

const CublasLtApi& cublaslt() {
  static const CublasLtApi api = [] {
    static const SharedLibrary library(
        {"libcublasLt.so.13", RACE_CUBLASLT_TOOLKIT_PATH},
        "the CUDA backend's matrix products need cuBLASLt from CUDA 13: install the toolkit's cuBLAS (or the pip "
        "package nvidia-cublas) and put the folder holding libcublasLt.so.13 on LD_LIBRARY_PATH");
    CublasLtApi loaded{};
#define RACE_LOAD(name) loaded.name = library.function<decltype(loaded.name)>("cublasLt" #name)
    RACE_LOAD(Create);
    RACE_LOAD(Destroy);
    RACE_LOAD(GetStatusName);
    RACE_LOAD(GetStatusString);
    RACE_LOAD(Matmul);
    RACE_LOAD(MatmulAlgoGetHeuristic);
    RACE_LOAD(MatmulDescCreate);
    RACE_LOAD(MatmulDescDestroy);
    RACE_LOAD(MatmulDescSetAttribute);
    RACE_LOAD(MatmulPreferenceCreate);
    RACE_LOAD(MatmulPreferenceDestroy);
    RACE_LOAD(MatmulPreferenceSetAttribute);
    RACE_LOAD(MatrixLayoutCreate);
    RACE_LOAD(MatrixLayoutDestroy);
#undef RACE_LOAD
    return loaded;
  }();
  return api;
}

}  // namespace race::kernels::cuda
