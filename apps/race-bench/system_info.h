// Facts about this process and machine that a benchmark report needs: the process's peak resident memory
// (VmHWM), physical memory, core count, the CPU model and the current date.
#pragma once

#include <cstdint>
#include <string>

namespace race::bench {

// Peak resident set size of this process so far, in bytes (VmHWM of /proc/self/status). Resident rather
// than virtual, because virtual size counts reserved-but-untouched address space that costs no memory.
std::int64_t peak_resident_bytes();

// Installed physical memory in bytes.
std::int64_t physical_memory_bytes();

// Logical processors available to OpenMP.
int cpu_count();

// "model name" of the first processor in /proc/cpuinfo, or "unknown".
std::string cpu_model();

// The current UTC time as ISO 8601, e.g. "2025-01-31T12:34:56Z".
std::string utc_timestamp();

}  // namespace race::bench
