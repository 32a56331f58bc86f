// The default thread count of a rank, from its affinity mask and the ranks sharing its node.
#include "train/rank_threads.h"

#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace race::train {

ThreadChoice choose_threads(int configured, int local_ranks) {
  if (configured > 0) return {configured, fmt::format("run.threads = {}", configured)};
  if (const char* env = std::getenv("OMP_NUM_THREADS"); env != nullptr && *env != '\0') {
    const int threads = std::max(1, std::atoi(env));
    return {threads, fmt::format("OMP_NUM_THREADS = {}", env)};
  }
  cpu_set_t mask;
  CPU_ZERO(&mask);
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  const int allowed =
      sched_getaffinity(0, sizeof(mask), &mask) == 0 ? CPU_COUNT(&mask) : static_cast<int>(online);
  if (allowed < online)
    return {std::max(1, allowed), fmt::format("the {} CPUs this process is bound to", allowed)};
  const int threads = std::max(1, allowed / std::max(1, local_ranks));
  return {threads, fmt::format("{} CPUs shared by {} rank(s) on this node", allowed, local_ranks)};
}

}  // namespace race::train
