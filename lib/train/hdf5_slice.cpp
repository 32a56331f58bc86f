// Hyperslab reads over the HDF5 C API: the dataset, its type and its dataspace are opened per call, which
// costs microseconds against reading thousands of tokens, and keeps SlicedFile a plain movable file.
#include "train/hdf5_slice.h"

#include <hdf5.h>

#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace race::train {

namespace {

// Owns one HDF5 id and closes it with the matching H5xclose.
class Id {
 public:
  Id(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  ~Id() {
    if (id_ >= 0) closer_(id_);
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*closer_)(hid_t);
};

}  // namespace

SlicedFile SlicedFile::open(const std::filesystem::path& path) { return SlicedFile(Hdf5File::open(path)); }

void SlicedFile::read_rows(std::string_view dataset, std::int64_t first, std::int64_t count,
                           std::span<std::int64_t> out) const {
  // dataset_info names a missing dataset or a group in the file's own words.
  const DatasetInfo info = dataset_info(dataset);
  const std::string context = fmt::format("{}: dataset \"{}\"", name(), dataset);
  if (info.element_class != ElementClass::integer || (!info.is_signed && info.element_size >= 8)) {
    fail("{}: expected an integer type of at most 64 bits other than uint64, got {}", context, info.type_name);
  }
  if (info.shape.empty() || info.shape.size() > 2) {
    fail("{}: expected 1 or 2 dimensions, got {}", context, info.shape.size());
  }
  const std::int64_t rows = info.shape[0];
  const std::int64_t columns = info.shape.size() == 2 ? info.shape[1] : 1;
  if (first < 0 || count < 0 || first > rows - count) {
    fail("{}: rows [{}, {}) requested, but it has {} rows", context, first, first + count, rows);
  }
  RACE_CHECK(static_cast<std::int64_t>(out.size()) == count * columns, "output holds {} values, need {} x {}",
             out.size(), count, columns);
  if (count == 0) return;

  std::string path = "/";
  path.append(dataset.starts_with('/') ? dataset.substr(1) : dataset);
  const Id handle(H5Dopen2(id(), path.c_str(), H5P_DEFAULT), H5Dclose);
  const Id file_space(handle.ok() ? H5Dget_space(handle.get()) : -1, H5Sclose);
  const int rank = static_cast<int>(info.shape.size());
  const hsize_t start[2] = {static_cast<hsize_t>(first), 0};
  const hsize_t extent[2] = {static_cast<hsize_t>(count), static_cast<hsize_t>(columns)};
  const Id memory_space(H5Screate_simple(rank, extent, nullptr), H5Sclose);
  if (!file_space.ok() || !memory_space.ok() ||
      H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, extent, nullptr) < 0 ||
      H5Dread(handle.get(), H5T_NATIVE_INT64, memory_space.get(), file_space.get(), H5P_DEFAULT,
              out.data()) < 0) {
    H5Eclear2(H5E_DEFAULT);
    fail("{}: reading rows [{}, {}) failed (corrupt file?)", context, first, first + count);
  }
}

}  // namespace race::train
