#include "reference/embedding_reference.h"

#include <cstddef>

namespace race::reference {

std::vector<double> embedding_forward(const std::vector<int32_t>& ids, const std::vector<double>& table,
                                      int64_t channels) {
  std::vector<double> out;
  for (int32_t id : ids)
    for (int64_t c = 0; c < channels; ++c) out.push_back(table[id * channels + c]);
  return out;
}

std::vector<double> embedding_backward(const std::vector<int32_t>& ids, const std::vector<double>& dout,
                                       int64_t vocab, int64_t channels) {
  std::vector<double> dtable(static_cast<size_t>(vocab * channels));
  for (size_t n = 0; n < ids.size(); ++n)
    for (int64_t c = 0; c < channels; ++c)
      dtable[ids[n] * channels + c] += dout[static_cast<int64_t>(n) * channels + c];
  return dtable;
}

}  // namespace race::reference
