// The cuBLASLt functions GemmContext calls, loaded from libcublasLt.so.13 at run time (core/shared_library.h
// says why it is not linked). Each member has the type of the cuBLASLt function of the same name without
// the cublasLt prefix. For C++ sources of the CUDA backend (needs cublasLt.h).
#pragma once

#include <cublasLt.h>

namespace race::kernels::cuda {

struct CublasLtApi {
  decltype(&::cublasLtCreate) Create;
  decltype(&::cublasLtDestroy) Destroy;
  decltype(&::cublasLtGetStatusName) GetStatusName;
  decltype(&::cublasLtGetStatusString) GetStatusString;
  decltype(&::cublasLtMatmul) Matmul;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) MatmulAlgoGetHeuristic;
  decltype(&::cublasLtMatmulDescCreate) MatmulDescCreate;
  decltype(&::cublasLtMatmulDescDestroy) MatmulDescDestroy;
  decltype(&::cublasLtMatmulDescSetAttribute) MatmulDescSetAttribute;
  decltype(&::cublasLtMatmulPreferenceCreate) MatmulPreferenceCreate;
  decltype(&::cublasLtMatmulPreferenceDestroy) MatmulPreferenceDestroy;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) MatmulPreferenceSetAttribute;
  decltype(&::cublasLtMatrixLayoutCreate) MatrixLayoutCreate;
  decltype(&::cublasLtMatrixLayoutDestroy) MatrixLayoutDestroy;
};

// Loads the library on the first call (thread-safe) and keeps it; race::Error with a hint when it cannot.
// Searched as libcublasLt.so.13 on the loader's path (LD_LIBRARY_PATH first), then in the toolkit this build
// was configured with.
const CublasLtApi& cublaslt();

}  // namespace race::kernels::cuda
