// Checks shared by every Ops implementation.
#include "model/ops.h"

#include "core/error.h"

namespace race::model {

void check_param_ranges(const std::vector<ParamRange>& ranges) {
  int64_t end = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const ParamRange& r = ranges[i];
    if (r.offset < 0 || r.count < 0)
      fail("adamw: range {} has offset {} and count {}; both must be >= 0", i, r.offset, r.count);
    if (r.offset < end)
      fail("adamw: range {} starts at {}, before the previous range ends ({}); ranges must be in increasing "
           "order and must not overlap",
           i, r.offset, end);
    end = r.offset + r.count;
  }
}

}  // namespace race::model
