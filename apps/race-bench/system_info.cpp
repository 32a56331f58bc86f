// Peak memory, machine description and date for race-bench reports, read from /proc and sysconf.
#include "system_info.h"

#include <omp.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace race::bench {

std::int64_t peak_resident_bytes() {
  std::ifstream status("/proc/self/status");
  if (!status) fail("/proc/self/status: cannot open (race-bench measures peak memory on Linux only)");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) != 0) continue;
    std::istringstream fields(line.substr(6));
    std::int64_t kib = 0;
    std::string unit;
    if (!(fields >> kib >> unit) || unit != "kB") fail("/proc/self/status: cannot parse \"{}\"", line);
    return kib * 1024;
  }
  fail("/proc/self/status: no VmHWM line");
}

std::int64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) fail("cannot read the amount of physical memory (sysconf)");
  return static_cast<std::int64_t>(pages) * page_size;
}

int cpu_count() { return omp_get_num_procs(); }

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) break;
    const auto start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "unknown" : line.substr(start);
  }
  return "unknown";
}

std::string utc_timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

}  // namespace race::bench
