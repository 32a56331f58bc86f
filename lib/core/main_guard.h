// The top of every app's main(): runs the app body and turns any exception into "error: <message>" on stderr
// and an exit status, so users see a sentence rather than "terminate called after throwing ...".
#pragma once

#include <functional>

namespace race {

// Returns body()'s status, or after printing "error: <message>" to stderr (and to the log file, if one is
// set up): 2 for race::UsageError, 1 for any other exception ("out of memory: ..." for std::bad_alloc).
int run_guarded(const std::function<int()>& body);

}  // namespace race
