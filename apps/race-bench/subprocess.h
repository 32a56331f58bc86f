// Running a child process and capturing its standard output, for the per-size measurements of a sweep:
// each size runs in a fresh process so that its peak memory is its own, not the high-water mark of every
// size before it.
#pragma once

#include <string>
#include <vector>

namespace race::bench {

struct ChildResult {
  std::string stdout_text;
  int exit_status = 0;  // when exited normally
  int signal = 0;       // the signal that killed it, 0 if it exited
  double seconds = 0;   // wall time from start to exit
};

// Runs `program` with `arguments` (argv[1..]), stdin and stderr inherited, stdout captured.
// Failing to start it is a race::Error.
ChildResult run_child(const std::string& program, const std::vector<std::string>& arguments);

// The path of the running executable (/proc/self/exe resolved), to re-run ourselves.
std::string self_executable();

}  // namespace race::bench
