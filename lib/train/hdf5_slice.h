// Partial reads of large integer datasets: a corpus of a billion tokens, or N x T classification inputs, is
// read a window or a row at a time through an HDF5 hyperslab, never loaded whole. core/hdf5_io reads whole
// datasets only; this extends its read-only file with row-range reads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>

#include "core/hdf5_io.h"

namespace race::train {

class SlicedFile : public Hdf5File {
 public:
  // Opens read-only, with Hdf5File::open's errors (missing file, not HDF5, ...).
  static SlicedFile open(const std::filesystem::path& path);

  // Reads rows [first, first + count) of a rank-1 or rank-2 integer dataset (a row is one element of a 1-D
  // dataset, or all columns of a 2-D one) into `out` (count x columns) as int64. Storage may be any integer
  // type of up to 64 bits except uint64 (whose values int64 cannot hold); the range must lie inside the
  // dataset. Errors name the file and dataset.
  void read_rows(std::string_view dataset, std::int64_t first, std::int64_t count,
                 std::span<std::int64_t> out) const;

 private:
  explicit SlicedFile(Hdf5File&& file) : Hdf5File(std::move(file)) {}
};

}  // namespace race::train
