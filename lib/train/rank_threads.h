// OpenMP threads per rank: the cores this process may use, shared with the other ranks on its node.
#pragma once

#include <string>

namespace race::train {

struct ThreadChoice {
  int threads = 1;
  std::string reason;  // for the log: where the number came from
};

// `configured` > 0 (run.threads) wins; then OMP_NUM_THREADS when set; otherwise the CPUs of this process's
// affinity mask, divided among the `local_ranks` processes on the node when the mask is the whole machine
// (an unbound launch), or all of them when the launcher bound the process to its own cores. At least 1.
ThreadChoice choose_threads(int configured, int local_ranks);

}  // namespace race::train
