// The NCCL functions NcclCommunicator calls, loaded from libnccl.so.2 at run time (core/shared_library.h says
// why it is not linked). Each member has the type of the NCCL function of the same name without the nccl
// prefix. Built only with NCCL (RACE_HAVE_NCCL); needs nccl.h.
#pragma once

#include <nccl.h>

namespace race::train {

struct NcclApi {
  decltype(&::ncclAllReduce) AllReduce;
  decltype(&::ncclCommAbort) CommAbort;
  decltype(&::ncclCommDestroy) CommDestroy;
  decltype(&::ncclCommGetAsyncError) CommGetAsyncError;
  decltype(&::ncclCommInitRank) CommInitRank;
  decltype(&::ncclGetErrorString) GetErrorString;
  decltype(&::ncclGetLastError) GetLastError;
  decltype(&::ncclGetUniqueId) GetUniqueId;
};

// Loads the library on the first call (thread-safe) and keeps it; race::Error with a hint when it cannot.
// Searched as libnccl.so.2 on the loader's path (LD_LIBRARY_PATH first), then where this build found NCCL.
const NcclApi& nccl();

}  // namespace race::train
